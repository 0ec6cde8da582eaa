/**
 * One-off parity check of the LM zoo tokenizer over the (uncommitted) train split: make_zoo.py's `tokenizer`
 * stage writes each train document with its training ids to zoo/lm/.cache/parity/<domain>-train.jsonl; this
 * encodes every text with tokenizers.js and counts documents whose ids differ.
 *   node --import tsx zoo/lm/tooling/check-tokenizer.ts
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { LM_ZOO_DIR, loadLmZooTokenizer } from './lm-zoo-files.ts'

const dir = join(LM_ZOO_DIR, '.cache', 'parity')
const tokenizer = loadLmZooTokenizer()
let docs = 0
let mismatches = 0
for (const file of readdirSync(dir).sort()) {
  for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
    if (line.length === 0) continue
    const { text, ids } = JSON.parse(line) as { text: string; ids: number[] }
    docs++
    if (JSON.stringify(tokenizer.encode(text).ids) !== JSON.stringify(ids)) {
      mismatches++
      if (mismatches <= 5)
        console.log(`${file}: ids differ for ${JSON.stringify(text.slice(0, 80))}`)
    }
  }
}
console.log(`${docs} train documents, ${mismatches} with different ids`)
process.exitCode = mismatches === 0 && docs > 0 ? 0 : 1
