/**
 * The twin graph of matrices stored as a basis shared by the experts (recipe `exclusive.shared_basis`, issue #18),
 * checked exactly on the builder's test models with an exact basis (A = I, B = I, C_t = Δ_t): every use the
 * rewrite handles (Gemm, MatMul+Add, Gemm transB, tied Q/K, flattened Gemm, tied embedding lookup and head).
 */
import { TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { rewriteSetup } from '../../../test-support/rewrite-fixtures.ts'
import { mlpModel, transformerModel } from '../../../test-support/test-models.ts'
import { type ModelProto, onnx } from '../../onnx/proto.ts'
import { openSession, type ort } from '../../runtime/ort-session.ts'
import { encodeControls } from '../../twin-contract/encode-controls.ts'
import { syntheticFeeds } from '../import/model-io.ts'
import { withFloatInitializers } from '../import/read-onnx.ts'

const T = 3

async function run(model: Uint8Array | ModelProto, feeds: Record<string, ort.Tensor>) {
  const bytes = model instanceof Uint8Array ? model : onnx.ModelProto.encode(model).finish()
  const { session } = await openSession(bytes, { provider: 'cpu' })
  const out = await session.run(feeds)
  await session.release()
  return out
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)))
  return m
}

const mixRows = (mixes: number[][]) =>
  encodeControls(
    mixes.map((mix) => ({ mixWeights: mix, useRouter: 0 })),
    T,
  )

function row(t: ort.Tensor | undefined, b: number): Float32Array {
  const data = t?.data as Float32Array
  const per = data.length / (t?.dims[0] ?? 1)
  return data.subarray(b * per, (b + 1) * per)
}

describe.each([
  ['MLP (Gemm, MatMul+Add, Gemm transB)', mlpModel],
  ['transformer block (tied Q/K, flattened Gemm, tied lookup and head)', transformerModel],
])('shared-basis twin graph: %s', (_label, build) => {
  it('zero weights give the shared model exactly; one-hot rows each expert; mixed rows the materialised merge', async () => {
    const { twin, sharedModel, expertBytes, ex, shared, inputs, model } = await rewriteSetup({
      kind: build === mlpModel ? 'mlp' : 'block',
      basis: true,
    })
    const B = 4
    const x = syntheticFeeds(inputs, B, 11)
    const sharedOut = await run(sharedModel, x)
    const zero = await run(twin, { ...x, ...mixRows(Array(B).fill([0, 0, 0])) })
    expect(Array.from(zero.logits?.data as Float32Array)).toEqual(
      Array.from(sharedOut.logits?.data as Float32Array),
    )
    for (let t = 0; t < T; t++) {
      const onehot = [0, 0, 0].map((_, j) => (j === t ? 1 : 0))
      const out = await run(twin, { ...x, ...mixRows(Array(B).fill(onehot)) })
      const expert = await run(expertBytes[t] as Uint8Array, x)
      const e = expert.logits?.data as Float32Array
      expect(maxAbsDiff(e, sharedOut.logits?.data as Float32Array)).toBeGreaterThan(1e-2)
      expect(maxAbsDiff(out.logits?.data as Float32Array, e)).toBeLessThan(2e-5)
    }
    const mixes = [
      [0.2, 0.5, 0.3],
      [1, 0, 0],
      [0, 0, 0],
      [-0.5, 1.5, 0.25],
    ]
    const out = await run(twin, { ...x, ...mixRows(mixes) })
    for (let b = 0; b < B; b++) {
      const w = mixes[b] as number[]
      const merged = new Map<string, Float32Array>()
      for (const [name, s] of shared)
        merged.set(
          name,
          s.map(
            (v, i) =>
              v + w.reduce((a, wt, t) => a + wt * ((ex[t]?.get(name)?.[i] as number) - v), 0),
          ),
        )
      const ref = await run(withFloatInitializers(model.model, merged), x)
      expect(maxAbsDiff(row(out.logits, b), row(ref.logits, b))).toBeLessThan(2e-5)
    }
  })
})

describe('shared-basis naming convention', () => {
  it('stores <w>.twin_basis_u [rows, Ri], <w>.twin_basis_v [Ro, cols], <w>.twin_cores [T, Ri, Ro], no per-expert factors', async () => {
    const { twin } = await rewriteSetup({ kind: 'mlp', basis: true })
    const inits = new Map(
      (twin.graph?.initializer ?? []).map((t) => [t.name ?? '', t.dims?.map(Number)]),
    )
    const S = TWIN_FACTOR_SUFFIXES
    expect(inits.get(`fc2.weight${S.basisU}`)).toEqual([16, 16])
    expect(inits.get(`fc2.weight${S.basisV}`)).toEqual([12, 12])
    expect(inits.get(`fc2.weight${S.cores}`)).toEqual([T, 16, 12])
    expect(inits.get(`head.weight${S.cores}`)).toEqual([T, 4, 12]) // stored [out, in]
    expect(inits.has(`fc2.weight${S.u}`)).toBe(false)
    expect(inits.has(`fc2.weight${S.sigma}`)).toBe(false)
    expect(inits.get(`fc1.bias${S.delta}`)).toEqual([T, 16])
  })
})
