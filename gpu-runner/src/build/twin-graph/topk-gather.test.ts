import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseRecipe, TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { writeBuildFixture } from '../../../test-support/test-models.ts'
import type { MatrixFactors } from '../../factors/exclusive-factors.ts'
import { loadPackage } from '../../package/load-package.ts'
import { openSession } from '../../runtime/ort-session.ts'
import { encodeControls } from '../../twin-contract/encode-controls.ts'
import { buildPackage } from '../build-package.ts'
import { modelInputs, syntheticFeeds } from '../import/model-io.ts'
import { readOnnx, readOnnxBytes } from '../import/read-onnx.ts'
import { createReporter } from '../pipeline/progress.ts'
import { padExpertMajor } from './topk-gather.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-topk-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const T = 4
const K = 2

function controls(rows: { mix: number[]; router: boolean; k?: number }[]) {
  return encodeControls(
    rows.map((r) => ({
      mixWeights: r.mix,
      useRouter: r.router ? 1 : 0,
      ...(r.k !== undefined ? { topK: r.k } : {}),
    })),
    T,
  )
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = a.length === b.length ? 0 : Number.POSITIVE_INFINITY
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)))
  return m
}

describe.each([
  ['MLP (Gemm transA, MatMul+Add, Gemm transB)', 'mlp'],
  ['transformer block (tied Q/K, Transpose, flattened Gemm rows, tied head)', 'block'],
] as const)('top-k gather twin graph: %s', (_label, kind) => {
  it('equals the dense twin graph under the same sparse weights; rows apply their K largest |weights|', async () => {
    const fx = await writeBuildFixture(join(root, kind), {
      kind,
      experts: T,
      recipe: { variants: [], verify: { examples_per_expert: 2 } },
    })
    const reporter = createReporter({ quiet: true })
    await buildPackage(fx.recipePath, { out: join(root, `${kind}-dense`), reporter })
    const r = YAML.parse(await readFile(fx.recipePath, 'utf8'))
    r.exclusive = { ...r.exclusive, topk_gather: K }
    await writeFile(join(fx.dir, 'recipe-topk.yaml'), YAML.stringify(r))
    await buildPackage(join(fx.dir, 'recipe-topk.yaml'), {
      out: join(root, `${kind}-topk`),
      reporter,
    })
    const dense = await loadPackage(join(root, `${kind}-dense`))
    const topk = await loadPackage(join(root, `${kind}-topk`))
    const ds = (await openSession(dense.model, { provider: 'cpu' })).session
    const gs = (await openSession(topk.model, { provider: 'cpu' })).session
    try {
      const inputs = modelInputs((await readOnnx(fx.base)).graph)
      const rows = [
        { mix: [0, 0.7, 0, 0.3], router: false }, // two experts
        { mix: [0, 0, 1, 0], router: false }, // one-hot
        { mix: [-0.5, 0, 0, 1.5], router: false }, // negative weights are kept by magnitude
        { mix: [0, 0, 0, 0], router: false }, // shared
        { mix: [0, 0, 0, 0], router: true, k: K }, // routed top-2 (dense graph) vs capped (gather graph)
      ]
      const x = syntheticFeeds(inputs, rows.length, 5)
      const gatherRows = rows.map((row) => (row.router ? { ...row, k: T } : row))
      const d = await ds.run({ ...x, ...controls(rows) })
      const g = await gs.run({ ...x, ...controls(gatherRows) })
      const dl = d.logits?.data as Float32Array
      const gl = g.logits?.data as Float32Array
      // The check has teeth: the experts move the outputs far more than the tolerance.
      const zero = await gs.run({
        ...x,
        ...controls(rows.map(() => ({ mix: [0, 0, 0, 0], router: false }))),
      })
      expect(maxAbsDiff(gl, zero.logits?.data as Float32Array)).toBeGreaterThan(1e-2)
      expect(maxAbsDiff(gl, dl)).toBeLessThan(1e-4)
      expect(Array.from(g.expert_weights?.data as Float32Array)).toEqual(
        Array.from(d.expert_weights?.data as Float32Array),
      )
      const applied = g.expert_weights?.data as Float32Array
      const routed = Array.from(applied.subarray(4 * T, 5 * T))
      expect(routed.filter((w) => w > 0)).toHaveLength(K)
      expect(routed.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5)

      // Three non-zero weights: the gather graph applies the two largest |w| and reports exactly those.
      const three = { mix: [0.2, -0.5, 0, 0.3], router: false }
      const x1 = syntheticFeeds(inputs, 1, 9)
      const g3 = await gs.run({ ...x1, ...controls([three]) })
      expect(Array.from(g3.expert_weights?.data as Float32Array)).toEqual(
        Array.from(Float32Array.of(0, -0.5, 0, 0.3)),
      )
      const d2 = await ds.run({ ...x1, ...controls([{ mix: [0, -0.5, 0, 0.3], router: false }]) })
      expect(
        maxAbsDiff(g3.logits?.data as Float32Array, d2.logits?.data as Float32Array),
      ).toBeLessThan(1e-4)
    } finally {
      await ds.release()
      await gs.release()
    }

    // One copy of the factors, under the convention names and shapes ([rows, T·r], r = the recipe's rank).
    const graph = readOnnxBytes(topk.model, 'topk').graph
    // The MatMul + bias Add layers carry their bias corrections in the gathered product (folded-biases.ts), so
    // the comparison with the dense graph above covers the fold.
    expect((graph.node ?? []).some((n) => n.name?.includes('/xu_bias'))).toBe(true)
    const inits = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t.dims?.map(Number)]))
    const first = topk.manifest.exclusive.find((e) => e.kind === 'matrix')
    expect(inits.get(`${first?.name}${TWIN_FACTOR_SUFFIXES.u}`)).toEqual([first?.shape[0], T * 2])
  })
})

describe('padExpertMajor', () => {
  it('groups interleaved rank columns by expert and pads with zero σ; ΔW_t is unchanged', () => {
    // rows 2, cols 3; ranks: expert 0 → 2, expert 1 → 0, expert 2 → 1, interleaved as [0, 2, 0].
    const m: MatrixFactors = {
      kind: 'matrix',
      name: 'w',
      rows: 2,
      cols: 3,
      u: Float32Array.of(1, 2, 3, 4, 5, 6), // [2, 3]
      sigma: Float32Array.of(0.5, 2, 0.25),
      vt: Float32Array.of(1, 0, 1, 0, 1, 0, 2, 2, 2), // [3, 3]
      expertOfRank: Int32Array.of(0, 2, 0),
    }
    const p = padExpertMajor(m, 3)
    expect(p.r).toBe(2)
    expect(Array.from(p.expertOfRank)).toEqual([0, 0, 1, 1, 2, 2])
    expect(Array.from(p.sigma)).toEqual([0.5, 0.25, 0, 0, 2, 0])
    const delta = (
      u: Float32Array,
      s: Float32Array,
      v: Float32Array,
      eor: Int32Array,
      t: number,
    ) => {
      const R = s.length
      const out = new Float32Array(6)
      for (let c = 0; c < R; c++)
        if (eor[c] === t)
          for (let i = 0; i < 2; i++)
            for (let j = 0; j < 3; j++)
              out[i * 3 + j] =
                (out[i * 3 + j] as number) +
                (s[c] as number) * (u[i * R + c] as number) * (v[c * 3 + j] as number)
      return Array.from(out)
    }
    for (let t = 0; t < 3; t++)
      expect(delta(p.u, p.sigma, p.vt, p.expertOfRank, t)).toEqual(
        delta(m.u, m.sigma, m.vt, m.expertOfRank, t),
      )
  })
})

describe('recipe exclusive.topk_gather', () => {
  it('must be below the number of experts', () => {
    const recipe = {
      name: 'x',
      base: 'b.onnx',
      experts: [
        { name: 'a', model: 'a.onnx' },
        { name: 'b', model: 'b.onnx' },
      ],
      exclusive: { rank: 4, topk_gather: 2 },
      router: { data: 'r.jsonl' },
    }
    expect(() => parseRecipe(recipe)).toThrow(
      /exclusive\.topk_gather: must be below the number of experts \(2\)/,
    )
    expect(
      parseRecipe({ ...recipe, exclusive: { rank: 4, topk_gather: 1 } }).exclusive.topk_gather,
    ).toBe(1)
  })
})
