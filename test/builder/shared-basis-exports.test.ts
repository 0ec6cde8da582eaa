/**
 * `exclusive: { shared_basis }` (issue #18) on real `torch.onnx.export` output (test/fixtures/pytorch): the layouts
 * and uses the generated test models lack — nn.MultiheadAttention's activations on [seq, batch, d] and
 * [seq·batch, d] (the per-row mix of the cores), a tied token embedding read by a Gather (A's rows picked by the
 * ids) and by a Gemm transB (the transposed basis). Each fixture expert is the base plus a rank-4 Δ per matrix, so
 * the three experts' deltas against the shared merge span 12 directions on each side: a shared basis of rank 12
 * reproduces every expert (relative error below 1e-3 against the expert's own ONNX output), rank 6 does not.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildPackage, createReporter, xorshift32 } from '@twinserve/gpu-runner/build'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { ort } from '@twinserve/gpu-runner/runtime'
import { encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { afterAll, describe, expect, it } from 'vitest'

const FIXTURES = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'fixtures', 'pytorch')
const EXPERTS = ['expert-1', 'expert-2', 'expert-3'] as const
const root = await mkdtemp(join(tmpdir(), 'twinserve-basis-exports-'))
afterAll(() => rm(root, { recursive: true, force: true }))

interface JsonTensor {
  dims: number[]
  data: number[]
}

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

async function build(set: string, rank: number): Promise<string> {
  const data = join(root, `${set}.jsonl`)
  const next = xorshift32(13)
  const lines = EXPERTS.flatMap((expert) =>
    Array.from({ length: 12 }, () =>
      JSON.stringify({
        expert,
        inputs: { input_ids: Array.from({ length: 6 }, () => Math.floor(next() * 48)) },
      }),
    ),
  )
  await writeFile(data, `${lines.join('\n')}\n`)
  const recipe = {
    name: set,
    base: join(FIXTURES, set, 'base.onnx'),
    experts: EXPERTS.map((e) => ({ name: e, model: join(FIXTURES, set, `${e}.onnx`) })),
    exclusive: { shared_basis: { rank } },
    router: { data, epochs: 3 },
    variants: [],
    verify: { examples_per_expert: 2 },
  }
  const recipePath = join(root, `${set}-${rank}.json`)
  await writeFile(recipePath, JSON.stringify(recipe))
  const dir = join(root, `${set}-${rank}`)
  await buildPackage(recipePath, { out: dir, reporter: createReporter({ quiet: true }) })
  return dir
}

/** The largest relative error of a one-hot mix against each expert's own ONNX output, over the reference cases. */
async function oneHotError(pkgDir: string, set: string): Promise<number> {
  const ref = JSON.parse(readFileSync(join(FIXTURES, set, 'reference.json'), 'utf8')) as {
    output: string
    cases: { inputs: Record<string, JsonTensor> }[]
  }
  const twin = await ort.InferenceSession.create(join(pkgDir, 'model.onnx'))
  let worst = 0
  for (const [t, expert] of EXPERTS.entries()) {
    const own = await ort.InferenceSession.create(join(FIXTURES, set, `${expert}.onnx`))
    for (const c of ref.cases) {
      const feeds = Object.fromEntries(
        Object.entries(c.inputs).map(([k, v]) => [
          k,
          new ort.Tensor('int64', BigInt64Array.from(v.data, BigInt), v.dims),
        ]),
      )
      const batch = c.inputs.input_ids?.dims[0] ?? 1
      const mixWeights = EXPERTS.map((_, j) => (j === t ? 1 : 0))
      const rows = Array.from({ length: batch }, () => ({ mixWeights }))
      const got = (await twin.run({ ...feeds, ...encodeControls(rows, EXPERTS.length) }))[
        ref.output
      ]
      const want = (await own.run(feeds))[ref.output]
      worst = Math.max(worst, relErr(got?.data as Float32Array, want?.data as Float32Array))
    }
    await own.release()
  }
  await twin.release()
  return worst
}

describe('shared basis on torch.onnx.export output: rank 12 reproduces each expert, rank 6 does not', () => {
  it.each([
    ['decoder', 'nn.MultiheadAttention on [seq, batch, d]'],
    ['tied', 'tied embedding: a Gather and a Gemm transB'],
  ])('%s (%s)', async (set) => {
    const dir = await build(set, 12)
    expect(await oneHotError(dir, set)).toBeLessThan(1e-3)
    // Both forms serve some use: per example (batch outermost) and per row (the rest, and the lookup).
    const graph = onnx.ModelProto.decode(readFileSync(join(dir, 'model.onnx'))).graph
    const hints = (graph?.node ?? []).map((n) => n.output?.[0] ?? '')
    expect(hints.filter((h) => h.includes('z_per_expert')).length).toBeGreaterThan(0)
    expect(hints.filter((h) => h.includes('cores_per_example')).length).toBeGreaterThan(0)
    expect(await oneHotError(await build(set, 6), set)).toBeGreaterThan(1e-2)
  })
})
