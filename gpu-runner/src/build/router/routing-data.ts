/**
 * The router's labelled data: JSON lines `{"expert": "<name>", "inputs": {"<input>": [flat values]}}` (one
 * example per line, no batch axis), read line by line, checked, and split per expert with a seeded shuffle into
 * train / validation (early stopping) / held-out (reported accuracy only) parts. An input with one dynamic dim
 * besides the batch may be left out: it is fed empty along that dim (a decoder's past key/values at prefill).
 * A recipe with a tokenizer may give `{"text": "<utf-8 text>"}` in place of the token inputs: the text is
 * tokenized by the package's tokenizer and input rule (text/text-tokenizer.ts, the runner's own code).
 * @module
 */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { createInterface } from 'node:readline'
import { AppError, TEXT_INPUT } from '@twinserve/shared'
import type { TextTokenizer } from '../../text/text-tokenizer.ts'
import { createRng, mixSeed, permutation } from '../../train/index.ts'
import { type ExampleInputs, emptyDims, type IoTensor } from '../import/model-io.ts'

export interface RoutingExample {
  /** Index of the expert in the recipe's order. */
  expert: number
  inputs: ExampleInputs
}

export interface RoutingSplit {
  train: RoutingExample[]
  validation: RoutingExample[]
  heldout: RoutingExample[]
}

function bad(path: string, line: number, message: string): AppError {
  return new AppError('INVALID_REQUEST', `router data ${path}, line ${line}: ${message}`)
}

/**
 * Reads and checks every line. `maxPerExpert` keeps the first examples of each expert in file order (reading
 * stops early once every expert is full).
 */
export async function readRoutingData(
  path: string,
  experts: readonly string[],
  inputs: readonly IoTensor[],
  opts: {
    maxPerExpert?: number
    text?: TextTokenizer
    /** Experts whose lines are skipped, not refused (the experts a delta build removes: issue #19). */
    skip?: readonly string[]
  } = {},
): Promise<RoutingExample[]> {
  try {
    if (!(await stat(path)).isFile()) throw new Error('not a file')
  } catch (err) {
    throw new AppError('INVALID_REQUEST', `router data file ${path} not found`, { cause: err })
  }
  const index = new Map(experts.map((e, i) => [e, i]))
  const counts = experts.map(() => 0)
  const cap = opts.maxPerExpert ?? Number.POSITIVE_INFINITY
  const names = new Set(inputs.map((i) => i.name))
  const out: RoutingExample[] = []
  const stream = createReadStream(path, { encoding: 'utf8' })
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY })
  let n = 0
  try {
    for await (const text of lines) {
      n++
      if (text.trim() === '') continue
      let row: unknown
      try {
        row = JSON.parse(text)
      } catch {
        throw bad(path, n, 'not valid JSON')
      }
      if (typeof row !== 'object' || row === null || Array.isArray(row))
        throw bad(path, n, 'expected an object {"expert": …, "inputs": {…}}')
      const { expert, inputs: values } = row as { expert?: unknown; inputs?: unknown }
      if (typeof expert !== 'string') throw bad(path, n, '"expert" must be a string')
      const e = index.get(expert)
      if (e === undefined && opts.skip?.includes(expert)) continue
      if (e === undefined)
        throw bad(path, n, `expert '${expert}' is not in the recipe (${experts.join(', ')})`)
      if (typeof values !== 'object' || values === null || Array.isArray(values))
        throw bad(path, n, '"inputs" must be an object of input name → flat array')
      const ex: Record<string, number[]> = {}
      for (const [k, v] of Object.entries(values)) {
        if (k === TEXT_INPUT && !names.has(k)) {
          if (!opts.text)
            throw bad(path, n, `input '${k}' is raw text, but the recipe has no tokenizer`)
          if (typeof v !== 'string') throw bad(path, n, `input '${k}' must be a string`)
          if (Object.keys(values).length > 1)
            throw bad(path, n, `give either '${k}' or the token inputs, not both`)
          Object.assign(ex, opts.text.encodeExample(v, `router data ${path}, line ${n}: '${k}'`))
          continue
        }
        if (!names.has(k))
          throw bad(path, n, `input '${k}' is not an input of the model (${[...names].join(', ')})`)
        if (
          !Array.isArray(v) ||
          v.length === 0 ||
          !v.every((x) => typeof x === 'number' && Number.isFinite(x))
        )
          throw bad(path, n, `input '${k}' must be a non-empty flat array of finite numbers`)
        ex[k] = v as number[]
      }
      for (const input of inputs)
        if (!ex[input.name] && !emptyDims(input))
          throw bad(path, n, `input '${input.name}' is missing`)
      if ((counts[e] as number) >= cap) {
        if (counts.every((c) => c >= cap)) break
        continue
      }
      counts[e] = (counts[e] as number) + 1
      out.push({ expert: e, inputs: ex })
    }
  } finally {
    lines.close()
    stream.destroy()
  }
  const missing = experts.filter((_, i) => (counts[i] as number) < 3)
  if (missing.length > 0)
    throw new AppError(
      'INVALID_REQUEST',
      `router data ${path} has fewer than 3 examples for expert(s) ${missing.join(', ')} (needed for train / validation / held-out splits)`,
    )
  return out
}

/**
 * Splits each expert's examples (seeded shuffle) so that every split has each expert in proportion:
 * held-out first, then validation, the rest for training. At least one example per expert in each split.
 */
export function splitRouting(
  examples: readonly RoutingExample[],
  experts: number,
  opts: { heldoutFraction: number; validationFraction: number; seed: number },
): RoutingSplit {
  const split: RoutingSplit = { train: [], validation: [], heldout: [] }
  for (let e = 0; e < experts; e++) {
    const mine = examples.filter((x) => x.expert === e)
    const order = permutation(mine.length, createRng(mixSeed(opts.seed, 0x5eed, e)))
    const h = Math.max(1, Math.round(mine.length * opts.heldoutFraction))
    const v = Math.max(1, Math.round(mine.length * opts.validationFraction))
    order.forEach((idx, k) => {
      const ex = mine[idx] as RoutingExample
      if (k < h) split.heldout.push(ex)
      else if (k < h + v) split.validation.push(ex)
      else split.train.push(ex)
    })
  }
  return split
}
