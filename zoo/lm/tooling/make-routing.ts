/**
 * Writes zoo/lm/data/routing.jsonl, the twin package's routing data (issue 14): each train prompt of
 * data/prompts.jsonl as the model's prefill inputs, `input_ids` (BOS + the prompt's tokens, as the runner encodes a
 * completion prompt), an all-ones `attention_mask` and `position_ids` 0…n−1, labelled with its domain. The past
 * key/values are left out: the builder feeds them empty, as at prefill, so the router reads features of the prompt
 * alone (the mix is chosen once per sequence and held for every decode step).
 *
 *   node --import tsx zoo/lm/tooling/make-routing.ts
 * @module
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { lmZooPath, loadLmZooTokenizer } from './lm-zoo-files.ts'

interface Prompt {
  domain: string
  split: string
  id: string
  prompt: string
}

const tokenizer = loadLmZooTokenizer()
const prompts = readFileSync(lmZooPath('data', 'prompts.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => JSON.parse(l) as Prompt)
  .filter((p) => p.split === 'train')
const lines = prompts.map((p) => {
  const ids = tokenizer.encode(p.prompt).ids
  return JSON.stringify({
    expert: p.domain,
    inputs: {
      input_ids: ids,
      attention_mask: ids.map(() => 1),
      position_ids: ids.map((_, i) => i),
    },
  })
})
writeFileSync(lmZooPath('data', 'routing.jsonl'), `${lines.join('\n')}\n`)
process.stdout.write(`wrote ${lines.length} routing examples to zoo/lm/data/routing.jsonl\n`)
