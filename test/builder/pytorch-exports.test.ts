/**
 * `twinserve build` on real `torch.onnx.export` output (issue #13): the committed fixtures in test/fixtures/pytorch
 * (an encoder at the exporter's default opset, at opsets 11 and 9, with its weights in Constant nodes, with external
 * data; a decoder of nn.MultiheadAttention blocks, whose attention runs on [seq, batch, d]; a tied embedding/LM
 * head) build into twin packages, and a one-hot mix reproduces each expert: the twin graph, run in onnxruntime on
 * the fixtures' reference inputs, matches the expert's own ONNX output and the PyTorch reference to a relative
 * error below 1e-3.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildPackage, createReporter, xorshift32 } from '@twinserve/gpu-runner/build'
import { loadModel } from '@twinserve/gpu-runner/model'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { afterAll, describe, expect, it } from 'vitest'

const FIXTURES = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'pytorch')
const EXPERTS = ['expert-1', 'expert-2', 'expert-3'] as const
const root = await mkdtemp(join(tmpdir(), 'twinserve-pytorch-'))
afterAll(() => rm(root, { recursive: true, force: true }))

interface JsonTensor {
  dims: number[]
  data: number[]
}
interface Reference {
  output: string
  cases: { name: string; inputs: Record<string, JsonTensor>; outputs: Record<string, JsonTensor> }[]
}

const reference = (set: string): Reference =>
  JSON.parse(readFileSync(join(FIXTURES, set, 'reference.json'), 'utf8')) as Reference

/** max |a − b| / max |b|. */
function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0
  let scale = 0
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(Number(actual[i]) - Number(expected[i])))
    scale = Math.max(scale, Math.abs(Number(expected[i])))
  }
  return diff / scale
}

/** Routing data: random token ids (vocab 48) of one length, 12 examples per expert. */
async function routingData(path: string, inputs: readonly string[], seq: number): Promise<void> {
  const next = xorshift32(13)
  const lines: string[] = []
  for (const expert of EXPERTS)
    for (let i = 0; i < 12; i++) {
      const row: Record<string, number[]> = {}
      for (const name of inputs)
        row[name] = Array.from({ length: seq }, () =>
          name === 'attention_mask' ? 1 : Math.floor(next() * 48),
        )
      lines.push(JSON.stringify({ expert, inputs: row }))
    }
  await writeFile(path, `${lines.join('\n')}\n`)
}

/** Builds base (from `baseDir`) + the experts of `expertDir` at full rank; returns the package directory. */
async function build(
  name: string,
  baseDir: string,
  expertDir: string,
  inputs: string[],
  externalDataAbove?: number,
) {
  const dir = join(root, name)
  const data = join(root, `${name}.jsonl`)
  await routingData(data, inputs, 6)
  const recipe = {
    name,
    base: join(FIXTURES, baseDir, 'base.onnx'),
    experts: EXPERTS.map((e) => ({ name: e, model: join(FIXTURES, expertDir, `${e}.onnx`) })),
    exclusive: { energy: 1 },
    router: { data, epochs: 3 },
    verify: { examples_per_expert: 2 },
  }
  const recipePath = join(root, `${name}.json`)
  await writeFile(recipePath, JSON.stringify(recipe))
  const report = await buildPackage(recipePath, {
    out: dir,
    reporter: createReporter({ quiet: true }),
    ...(externalDataAbove === undefined ? {} : { externalDataAbove }),
  })
  return { dir, report }
}

const int64 = (t: JsonTensor) => new ort.Tensor('int64', BigInt64Array.from(t.data, BigInt), t.dims)

/** Every reference case under a one-hot mix of each expert, against that expert's ONNX file and PyTorch. */
async function expectOneHotReproduces(pkgDir: string, set: string, expertDir: string) {
  const ref = reference(set)
  const twin = await ort.InferenceSession.create(join(pkgDir, 'model.onnx'))
  try {
    for (const [t, expert] of EXPERTS.entries()) {
      const own = await ort.InferenceSession.create(join(FIXTURES, expertDir, `${expert}.onnx`))
      try {
        for (const c of ref.cases) {
          const feeds = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, int64(v)]))
          const batch = c.inputs[Object.keys(c.inputs)[0] ?? '']?.dims[0] ?? 1
          const mixWeights = EXPERTS.map((_, j) => (j === t ? 1 : 0))
          const rows = Array.from({ length: batch }, () => ({ mixWeights }))
          const got = (await twin.run({ ...feeds, ...encodeControls(rows, EXPERTS.length) }))[
            ref.output
          ]
          const mine = (await own.run(feeds))[ref.output]
          const torch = c.outputs[expert]
          const label = `${set}: one-hot ${expert}, ${c.name}`
          expect(got?.dims, label).toEqual(torch?.dims)
          expect(relErr(got?.data as Float32Array, mine?.data as Float32Array), label).toBeLessThan(
            1e-3,
          )
          expect(relErr(got?.data as Float32Array, torch?.data ?? []), label).toBeLessThan(1e-3)
        }
      } finally {
        await own.release()
      }
    }
  } finally {
    await twin.release()
  }
}

const ENCODER_INPUTS = ['input_ids', 'attention_mask']

describe('twinserve build on torch.onnx.export output, one-hot mixes reproduce each expert', () => {
  it('decoder of nn.MultiheadAttention blocks (activations on [seq, batch, d]), opset 17', async () => {
    const { dir, report } = await build('decoder', 'decoder', 'decoder', ['input_ids'])
    expect(report.verification.experts.every((e) => e.oneHotMaxAbsDiff < 1e-4)).toBe(true)
    await expectOneHotReproduces(dir, 'decoder', 'decoder')
  })

  it('encoder at the exporter default opset (14)', async () => {
    const { dir } = await build('encoder', 'encoder', 'encoder', ENCODER_INPUTS)
    await expectOneHotReproduces(dir, 'encoder', 'encoder')
  })

  it('encoder at opset 11, its ops emitted in opset-11 forms', async () => {
    const { dir, report } = await build(
      'opset11',
      'encoder/opset11',
      'encoder/opset11',
      ENCODER_INPUTS,
    )
    expect(report.graph.opset).toBe(11)
    expect(report.graph.forms.join('; ')).toMatch(/Unsqueeze\/ReduceSum axes as attributes/)
    await expectOneHotReproduces(dir, 'encoder', 'encoder/opset11')
  })

  it('encoder at opset 9', async () => {
    const { dir } = await build('opset9', 'encoder/opset9', 'encoder/opset9', ENCODER_INPUTS)
    await expectOneHotReproduces(dir, 'encoder', 'encoder/opset9')
  })

  it('encoder with every weight in a Constant node (lifted to initializers on import)', async () => {
    const { dir, report } = await build(
      'constants',
      'constant-weights',
      'constant-weights',
      ENCODER_INPUTS,
    )
    expect(report.graph.liftedConstants).toBe(38)
    expect(report.exclusive.some((r) => r.name === 'tok.weight')).toBe(true)
    await expectOneHotReproduces(dir, 'encoder', 'constant-weights')
  })

  it('a base with external data and experts without', async () => {
    const { dir } = await build('external', 'external-data', 'encoder', ENCODER_INPUTS)
    await expectOneHotReproduces(dir, 'encoder', 'encoder')
  })

  it('a package written with external data (as graphs over 2 GB are) verifies, reproduces and serves', async () => {
    const { dir, report } = await build('ext-out', 'encoder', 'encoder', ENCODER_INPUTS, 1024)
    expect(report.graph.externalOutputs).toBe(true)
    expect(Object.keys(report.manifest.files).sort()).toEqual([
      'model.onnx',
      'model.onnx.data',
      'variants/shared.onnx',
      'variants/shared.onnx.data',
    ])
    await expectOneHotReproduces(dir, 'encoder', 'encoder')
    // The runner opens such graphs by path (their data beside them) and serves them.
    const model = await loadModel(dir, {
      provider: 'cpu',
      mergeCache: { maxEntries: 1, maxBytes: 1 },
    })
    const c = reference('encoder').cases[0]
    const ids = c?.inputs.input_ids as JsonTensor
    const mask = c?.inputs.attention_mask as JsonTensor
    const prepared = model.prepare({
      inputs: [
        { name: 'input_ids', datatype: 'INT64', shape: ids.dims, data: ids.data },
        { name: 'attention_mask', datatype: 'INT64', shape: mask.dims, data: mask.data },
      ],
      parameters: { experts: { 'expert-2': 1 } },
    })
    const [out] = await model.run([prepared])
    const logits = out?.outputs.find((o) => o.name === 'logits')?.data as number[]
    expect(relErr(logits, c?.outputs['expert-2']?.data ?? [])).toBeLessThan(1e-3)
  })

  it('tied token embedding and LM head (one initializer in a Gather and a Gemm transB)', async () => {
    const { dir, report } = await build('tied', 'tied', 'tied', ['input_ids'])
    const tok = report.exclusive.find((r) => r.name === 'tok.weight')
    expect(tok?.kind).toBe('matrix')
    await expectOneHotReproduces(dir, 'tied', 'tied')
  })
})
