/**
 * `exclusive: { shared_basis: { rank } }` (issue #18) built end to end on the generated MLP, served by the runner:
 * a one-hot mix computes the model built here, in TS, from the package's W_shared + A·C_t·B (its stored basis and
 * cores), and the compression error falls as the basis rank grows.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type InferenceRequest, TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { MLP_SIZES, writeBuildFixture } from '../../../test-support/test-models.ts'
import { mergeTensor } from '../../merge/merge-tensor.ts'
import { loadModel } from '../../model/load-model.ts'
import { onnx } from '../../onnx/proto.ts'
import { loadPackage } from '../../package/load-package.ts'
import { openSession, ort } from '../../runtime/index.ts'
import { buildDelta } from '../build-delta.ts'
import { buildPackage } from '../build-package.ts'
import { readOnnxBytes, tensorToFloat32, withFloatInitializers } from '../import/read-onnx.ts'
import { createReporter } from './progress.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-basis-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const quiet = (out: string) => ({ out, reporter: createReporter({ quiet: true }) })

// The MLP's matrices as stored [rows, cols], and its biases.
const MATRICES: [string, number, number][] = [
  ['fc1.weight', 8, 16],
  ['fc2.weight', 16, 12],
  ['head.weight', 4, 12],
]
const VECTORS = ['fc1.bias', 'fc2.bias', 'head.bias']
const T = 3

/** [m, k]·[k, n], float64 accumulation. */
function mul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n)
  for (let i = 0; i < m; i++)
    for (let j = 0; j < k; j++)
      for (let c = 0; c < n; c++)
        out[i * n + c] =
          (out[i * n + c] as number) + (a[i * k + j] as number) * (b[j * n + c] as number)
  return out
}

async function buildAt(rank: number | { budget: number }, dir: string, dtype = 'float32') {
  const basis = typeof rank === 'number' ? { rank } : rank
  const fx = await writeBuildFixture(join(root, dir), {
    recipe: { exclusive: { shared_basis: basis, dtype }, variants: [] },
  })
  const out = join(root, `${dir}-pkg`)
  const report = await buildPackage(fx.recipePath, quiet(out))
  return { fx, out, report, pkg: await loadPackage(out) }
}

/** Row-major examples of the MLP's input. */
const inputs = (n: number) =>
  Float32Array.from({ length: n * MLP_SIZES.dIn }, (_, i) => Math.sin(i * 1.3) * 1.5)

describe('exclusive.shared_basis on the generated MLP', async () => {
  const low = await buildAt(2, 'r2')
  const mid = await buildAt(5, 'r5')
  const full = await buildAt(16, 'r16')
  const int8 = await buildAt(5, 'r5-int8', 'int8')
  const budgeted = await buildAt({ budget: 0.3 }, 'budget')

  it('lists each matrix with its basis ranks (capped by the stacked matrices) and stores basis and cores, not per-expert factors', () => {
    const m = mid.pkg.manifest
    expect(m.exclusive.filter((e) => e.kind === 'matrix').map((e) => [e.name, e.basis])).toEqual([
      ['fc1.weight', { rankIn: 5, rankOut: 5 }],
      ['fc2.weight', { rankIn: 5, rankOut: 5 }],
      ['head.weight', { rankIn: 4, rankOut: 5 }], // rows 4
    ])
    const twin = readOnnxBytes(mid.pkg.model, 'twin').initializers
    const S = TWIN_FACTOR_SUFFIXES
    expect(twin.get(`fc1.weight${S.cores}`)?.dims?.map(Number)).toEqual([T, 5, 5])
    expect(twin.has(`fc1.weight${S.u}`)).toBe(false)
    expect(mid.report.verification.zeroWeightsMaxAbsDiff).toBe(0)
  })

  it('a one-hot mix (twin graph, and the runner serving the package) equals W_shared + A·C_t·B built in TS', async () => {
    const { fx, pkg, out } = mid
    const twin = readOnnxBytes(pkg.model, 'twin').initializers
    const f = (name: string) => {
      const t = twin.get(name)
      if (!t) throw new Error(`no ${name} in the twin graph`)
      return tensorToFloat32(t)
    }
    const base = readOnnxBytes(await readFile(fx.base), 'base')
    const served = await loadModel(out, {
      provider: 'cpu',
      threads: 1,
      merge: mergeTensor,
      mergeCache: { maxEntries: 2, maxBytes: 1 << 20 },
    })
    const n = 5
    const x = inputs(n)
    for (let t = 0; t < T; t++) {
      const params = new Map<string, Float32Array>()
      for (const name of base.initializers.keys()) if (twin.has(name)) params.set(name, f(name))
      for (const [name, rows, cols] of MATRICES) {
        const e = pkg.manifest.exclusive.find((r) => r.name === name)
        const { rankIn: Ri, rankOut: Ro } = e?.basis ?? { rankIn: 0, rankOut: 0 }
        const core = f(`${name}${TWIN_FACTOR_SUFFIXES.cores}`).slice(t * Ri * Ro, (t + 1) * Ri * Ro)
        const ac = Float32Array.from(
          mul(f(`${name}${TWIN_FACTOR_SUFFIXES.basisU}`), core, rows, Ri, Ro),
        )
        const delta = mul(ac, f(`${name}${TWIN_FACTOR_SUFFIXES.basisV}`), rows, Ro, cols)
        params.set(
          name,
          f(name).map((v, i) => v + (delta[i] as number)),
        )
      }
      for (const name of VECTORS) {
        const d = f(name).length
        const dv = f(`${name}${TWIN_FACTOR_SUFFIXES.delta}`).subarray(t * d, (t + 1) * d)
        params.set(
          name,
          f(name).map((v, i) => v + (dv[i] as number)),
        )
      }
      const ref = withFloatInitializers(base.model, params)
      const { session } = await openSession(onnx.ModelProto.encode(ref).finish(), {
        provider: 'cpu',
      })
      const want = (await session.run({ x: new ort.Tensor('float32', x, [n, MLP_SIZES.dIn]) }))
        .logits?.data as Float32Array
      await session.release()
      const name = fx.experts[t]?.name ?? ''
      const req = (parameters: InferenceRequest['parameters']): InferenceRequest => ({
        inputs: [{ name: 'x', shape: [n, MLP_SIZES.dIn], datatype: 'FP32', data: Array.from(x) }],
        parameters,
      })
      const cases: InferenceRequest['parameters'][] = [
        { experts: { [name]: 1 } },
        { experts: { [name]: 1 }, merge_method: 'task_arithmetic' },
      ]
      for (const parameters of cases) {
        const [res] = await served.run([served.prepare(req(parameters))])
        const got = res?.outputs?.find((o) => o.name === 'logits')?.data as number[]
        let err = 0
        let norm = 0
        for (let i = 0; i < want.length; i++) {
          err += ((got[i] as number) - (want[i] as number)) ** 2
          norm += (want[i] as number) ** 2
        }
        expect(Math.sqrt(err / norm), `${name} ${JSON.stringify(parameters)}`).toBeLessThan(1e-4)
      }
      // The check has teeth: the shared model is far from the expert's reconstruction.
      const [shared] = await served.run([served.prepare(req({ variant: 'shared' }))])
      const s = shared?.outputs?.find((o) => o.name === 'logits')?.data as number[]
      expect(Math.max(...s.map((v, i) => Math.abs(v - (want[i] as number))))).toBeGreaterThan(1e-2)
    }
    await served.close()
  })

  it('the compression error falls as the basis rank grows, to zero at full rank', () => {
    const meanError = (r: typeof low) =>
      r.report.exclusive
        .filter((e) => e.kind === 'matrix')
        .flatMap((e) => e.relError)
        .reduce((a, b, _, all) => a + b / all.length, 0)
    const [e2, e5, e16] = [meanError(low), meanError(mid), meanError(full)]
    expect(e2).toBeGreaterThan(e5)
    expect(e5).toBeGreaterThan(e16)
    expect(e2).toBeGreaterThan(0.1)
    expect(e16).toBeLessThan(1e-3)
    // The check on errors has teeth: at full rank the one-hot rows reproduce the experts.
    for (const e of full.report.verification.experts) expect(e.oneHotMaxAbsDiff).toBeLessThan(1e-4)
    for (const e of low.report.verification.experts)
      expect(e.oneHotMaxAbsDiff).toBeGreaterThan(1e-3)
  })

  it('int8 storage (scales folded into the cores) stores the basis as INT8 and serves within 1% of float32', () => {
    const twin = readOnnxBytes(int8.pkg.model, 'twin').initializers
    expect(twin.get(`fc1.weight${TWIN_FACTOR_SUFFIXES.basisU}`)?.dataType).toBe(
      onnx.TensorProto.DataType.INT8,
    )
    expect(twin.get(`fc1.weight${TWIN_FACTOR_SUFFIXES.cores}`)?.dataType).toBe(
      onnx.TensorProto.DataType.FLOAT16,
    )
    int8.report.verification.experts.forEach((e, t) => {
      const f32 = mid.report.verification.experts[t]
      expect(Math.abs(e.oneHotMaxAbsDiff - (f32?.oneHotMaxAbsDiff ?? 0))).toBeLessThan(
        0.01 * (f32?.sharedMaxAbsDiff ?? 0),
      )
    })
    expect(int8.report.sizes.packageBytes).toBeLessThan(mid.report.sizes.packageBytes)
  })

  it('shared_basis.budget: ranks per matrix whose stored basis, cores and vector deltas fit the budget', () => {
    const twin = readOnnxBytes(budgeted.pkg.model, 'twin').initializers
    const S = TWIN_FACTOR_SUFFIXES
    let stored = 0
    for (const [name] of MATRICES)
      for (const suffix of [S.basisU, S.basisV, S.cores])
        stored += twin.get(`${name}${suffix}`)?.rawData?.byteLength ?? 0
    for (const name of VECTORS) stored += twin.get(`${name}${S.delta}`)?.rawData?.byteLength ?? 0
    const budget = 0.3 * budgeted.report.sizes.expertsBytes
    expect(stored).toBeGreaterThan(0.5 * budget) // spent, not left idle
    expect(stored).toBeLessThanOrEqual(budget)
    const ranks = budgeted.pkg.manifest.exclusive.flatMap((e) => (e.basis ? [e.basis.rankIn] : []))
    expect(ranks.length).toBeGreaterThan(0)
    // The test models' deltas are independent random matrices (nothing shared): at this budget the bases keep
    // part of every delta, no more.
    for (const e of budgeted.report.exclusive.filter((r) => r.basis))
      for (const err of e.relError) expect(err).toBeGreaterThan(0.05)
    expect(budgeted.report.verification.zeroWeightsMaxAbsDiff).toBe(0)
  })

  it('refuses a --from delta build of a shared-basis package (the basis belongs to all the experts together)', async () => {
    await expect(
      buildDelta(mid.fx.recipePath, mid.out, [{ op: 'remove', name: 'task-c' }], {
        out: join(root, 'delta-out'),
        reporter: createReporter({ quiet: true }),
      }),
    ).rejects.toThrow(
      /shared_basis: a package whose experts share one basis per matrix cannot take expert deltas/,
    )
  })
})
