// Parity check: @huggingface/tokenizers (the runner's library) must encode every text exactly as the Python
// training did. Reads tokenizer.json, tokenizer_config.json and a JSON file {"cases": [{"text", "ids"}]} (the
// committed tokenizer-parity.json, or .cache/parity-all.json: every text of every split, written by make_zoo.py);
// prints the count and the first mismatches; exits 1 on any mismatch.
//   node zoo/text/tooling/check-tokenizer.mjs zoo/text/models zoo/text/.cache/parity-all.json
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'

const [dir, expectedPath] = process.argv.slice(2)
if (!dir || !expectedPath) {
  console.error('usage: node zoo/text/tooling/check-tokenizer.mjs <tokenizer dir> <cases.json>')
  process.exit(2)
}
const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'))
const tokenizer = new Tokenizer(
  readJson(join(dir, 'tokenizer.json')),
  readJson(join(dir, 'tokenizer_config.json')),
)
let n = 0
let bad = 0
for (const { text, ids } of readJson(expectedPath).cases) {
  const got = tokenizer.encode(text).ids
  n++
  if (got.length !== ids.length || got.some((v, i) => v !== ids[i])) {
    bad++
    if (bad <= 10) console.log(JSON.stringify({ text, expected: ids, got }))
  }
}
console.log(`${n} texts, ${bad} mismatches`)
process.exit(bad === 0 ? 0 : 1)
