/**
 * The committed text zoo (zoo/text, made once by make_zoo.py) as TypeScript sees it, without Python: the runner's
 * tokenizer library encodes exactly as training did, the exported experts share one graph, onnxruntime reproduces
 * PyTorch's logits, and the recorded accuracies come back from the ONNX files on the committed test splits.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { ort } from '@twinserve/gpu-runner/runtime'
import { describe, expect, it } from 'vitest'
import { loadTextSplit, readTextZoo, textZooPath } from './text-zoo.ts'

const zoo = readTextZoo(resolve(import.meta.dirname, '../models'))
const readJson = <T>(file: string): T =>
  JSON.parse(readFileSync(textZooPath(zoo, file), 'utf8')) as T
const tokenizer = new Tokenizer(readJson(zoo.tokenizer.file), readJson(zoo.tokenizer.config))
const { max_length: MAX, pad_id: PAD, sep_id: SEP } = zoo.tokenizer

/** The models' input rule: [CLS], the first MAX − 2 pieces, [SEP]. */
function idsFor(text: string): number[] {
  const ids = tokenizer.encode(text).ids
  return ids.length > MAX ? [...ids.slice(0, MAX - 1), SEP] : ids
}

/** input_ids and attention_mask [rows, longest], right-padded with PAD. */
function feeds(rows: number[][]) {
  const seq = Math.max(...rows.map((r) => r.length))
  const ids = new BigInt64Array(rows.length * seq).fill(BigInt(PAD))
  const mask = new BigInt64Array(rows.length * seq)
  rows.forEach((r, i) => {
    r.forEach((v, j) => {
      ids[i * seq + j] = BigInt(v)
      mask[i * seq + j] = 1n
    })
  })
  return {
    input_ids: new ort.Tensor('int64', ids, [rows.length, seq]),
    attention_mask: new ort.Tensor('int64', mask, [rows.length, seq]),
  }
}

async function withSession<T>(file: string, run: (s: ort.InferenceSession) => Promise<T>) {
  const session = await ort.InferenceSession.create(textZooPath(zoo, file), {
    intraOpNumThreads: 1,
  })
  try {
    return await run(session)
  } finally {
    await session.release()
  }
}

function graphOf(bytes: Uint8Array): string {
  const g = onnx.ModelProto.decode(bytes).graph
  return JSON.stringify([
    (g?.node ?? []).map((n) => [n.opType, n.input, n.output]),
    (g?.initializer ?? []).map((t) => [t.name, t.dims, t.dataType]),
    (g?.input ?? []).map((v) => v.name),
    (g?.output ?? []).map((v) => v.name),
  ])
}

describe('text zoo tokenizer', () => {
  it('@huggingface/tokenizers encodes every parity case to the ids the models were trained with', () => {
    const { cases } = readJson<{ cases: { text: string; ids: number[] }[] }>(
      'tokenizer-parity.json',
    )
    expect(cases.length).toBeGreaterThan(50)
    for (const c of cases)
      expect(tokenizer.encode(c.text).ids, JSON.stringify(c.text)).toEqual(c.ids)
  })
})

describe('text zoo models', () => {
  it('lists every file intact, base and experts with one graph, within the 25 MB budget (40 MB with the package)', () => {
    const graphs = new Map<string, string>()
    for (const [name, f] of Object.entries(zoo.files)) {
      const bytes = readFileSync(textZooPath(zoo, f.path))
      expect(createHash('sha256').update(bytes).digest('hex'), f.path).toBe(f.sha256)
      expect(bytes.length, f.path).toBe(f.bytes)
      if (name !== 'base-opset11') graphs.set(name, graphOf(bytes))
    }
    expect(graphs.size).toBe(zoo.tasks.length + 1)
    expect(new Set(graphs.values()).size).toBe(1)
    expect(zoo.inputs.map((i) => i.name)).toEqual(['input_ids', 'attention_mask'])
    const committed = (dir: string, skip: readonly string[]): number =>
      readdirSync(dir, { withFileTypes: true })
        .filter((e) => !skip.includes(e.name))
        .reduce(
          (sum, e) =>
            sum +
            (e.isDirectory() ? committed(join(dir, e.name), []) : statSync(join(dir, e.name)).size),
          0,
        )
    const root = resolve(zoo.dir, '..')
    // The zoo itself within 25 MB; with its twin package (package/, issue #13) within 40 MB.
    expect(committed(root, ['.cache', 'package'])).toBeLessThanOrEqual(25 * 1024 * 1024)
    expect(committed(root, ['.cache'])).toBeLessThanOrEqual(40 * 1024 * 1024)
  })

  it('onnxruntime reproduces the PyTorch logits of every model, the opset-11 base included', async () => {
    const ref = readJson<{
      texts: string[]
      input_ids: number[][]
      attention_mask: number[][]
      logits: Record<string, number[][]>
    }>('reference.json')
    // The tokenizer library and the model's input rule give the reference's (PyTorch-side) inputs.
    ref.texts.forEach((text, i) => {
      const length = (ref.attention_mask[i] ?? []).reduce((a, b) => a + b, 0)
      expect(idsFor(text)).toEqual(ref.input_ids[i]?.slice(0, length))
    })
    const rows = ref.texts.map(idsFor)
    const models = { ...ref.logits, 'base-opset11': ref.logits.base ?? [] }
    for (const [name, expected] of Object.entries(models)) {
      const file = zoo.files[name]?.path ?? ''
      const got = await withSession(file, async (s) => (await s.run(feeds(rows))).logits)
      const want = expected.flat()
      const scale = Math.max(...want.map(Math.abs))
      const diff = Math.max(...want.map((v, i) => Math.abs(Number(got?.data[i]) - v)))
      expect(diff / scale, name).toBeLessThan(1e-4)
    }
  })

  it('reproduces the recorded test accuracy of the base and of each expert on its own task', async () => {
    for (const task of zoo.tasks) {
      const test = loadTextSplit(zoo, task.name, 'test')
      const k = task.classes.length
      for (const model of ['base', task.name]) {
        const file = zoo.files[model]?.path ?? ''
        const correct = await withSession(file, async (s) => {
          let hits = 0
          for (let i = 0; i < test.length; i += 64) {
            const batch = test.slice(i, i + 64)
            const out = (await s.run(feeds(batch.map((r) => idsFor(r.text))))).logits
            const width = out?.dims[1] ?? 0
            batch.forEach((r, b) => {
              const row = Array.from({ length: k }, (_, c) => Number(out?.data[b * width + c]))
              if (row.indexOf(Math.max(...row)) === r.label) hits++
            })
          }
          return hits
        })
        // Padding a row to its batch's longest changes float rounding (PyTorch batched by length); a flipped
        // near-tie moves accuracy by 1/n.
        expect(
          Math.abs(correct / test.length - (zoo.accuracy[model]?.[task.name]?.test ?? -1)),
          `${model} on ${task.name}`,
        ).toBeLessThanOrEqual(2.5 / test.length)
      }
    }
  })
})
