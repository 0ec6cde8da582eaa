import { TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { rewriteSetup } from '../../../test-support/rewrite-fixtures.ts'
import { mlpModel, transformerModel } from '../../../test-support/test-models.ts'
import type { ModelProto } from '../../onnx/proto.ts'
import { onnx } from '../../onnx/proto.ts'
import { openSession, type ort } from '../../runtime/ort-session.ts'
import { encodeControls } from '../../twin-contract/encode-controls.ts'
import { syntheticFeeds } from '../import/model-io.ts'
import { withFloatInitializers } from '../import/read-onnx.ts'

const T = 3

/** The rewrite with exact factors (Δ_t = Δ_t·I) and a prototype router on the default feature. */
const setup = (build: typeof mlpModel) =>
  rewriteSetup({ kind: build === mlpModel ? 'mlp' : 'block' })

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

function controls(
  rows: { mix: number[]; router: boolean; mask?: number[]; k?: number; abstain?: number }[],
) {
  return encodeControls(
    rows.map((r) => ({
      mixWeights: r.mix,
      useRouter: r.router ? 1 : 0,
      ...(r.mask ? { expertMask: r.mask } : {}),
      ...(r.k !== undefined ? { topK: r.k } : {}),
      ...(r.abstain !== undefined ? { abstainBelow: r.abstain } : {}),
    })),
    T,
  )
}

/** The row slice b of a [B, ...] output. */
function row(t: ort.Tensor | undefined, b: number): Float32Array {
  const data = t?.data as Float32Array
  const per = data.length / (t?.dims[0] ?? 1)
  return data.subarray(b * per, (b + 1) * per)
}

describe.each([
  ['MLP (Gemm, MatMul+Add, Gemm transB)', mlpModel],
  [
    'transformer block (LayerNorm, tied Q/K, Transpose, flattened Gemm, tied head)',
    transformerModel,
  ],
])('twin graph rewrite: %s', (_label, build) => {
  it('zero weights give the shared model exactly; one-hot rows give each expert; mixes give the materialised merge', async () => {
    const { twin, sharedModel, expertBytes, ex, shared, inputs, model } = await setup(build)
    const B = 4
    const x = syntheticFeeds(inputs, B, 11)
    const sharedOut = await run(sharedModel, x)
    const zero = await run(twin, {
      ...x,
      ...controls(Array(B).fill({ mix: [0, 0, 0], router: false })),
    })
    expect(Array.from(zero.logits?.data as Float32Array)).toEqual(
      Array.from(sharedOut.logits?.data as Float32Array),
    )
    expect(Array.from(zero.expert_weights?.data as Float32Array)).toEqual(new Array(B * T).fill(0))

    for (let t = 0; t < T; t++) {
      const onehot = [0, 0, 0].map((_, j) => (j === t ? 1 : 0))
      const out = await run(twin, {
        ...x,
        ...controls(Array(B).fill({ mix: onehot, router: false })),
      })
      const expert = await run(expertBytes[t] as Uint8Array, x)
      // The check has teeth: each expert is far from the shared model.
      expect(
        maxAbsDiff(expert.logits?.data as Float32Array, sharedOut.logits?.data as Float32Array),
      ).toBeGreaterThan(1e-2)
      expect(
        maxAbsDiff(out.logits?.data as Float32Array, expert.logits?.data as Float32Array),
      ).toBeLessThan(2e-5)
    }

    // Different weights per row in one batch, against a materialised θ_s + Σ w_t Δ_t per row.
    const mixes = [
      [0.2, 0.5, 0.3],
      [1, 0, 0],
      [0, 0, 0],
      [-0.5, 1.5, 0.25],
    ]
    const out = await run(twin, { ...x, ...controls(mixes.map((mix) => ({ mix, router: false }))) })
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
      const single = syntheticFeeds(inputs, B, 11)
      const ref = await run(withFloatInitializers(model.model, merged), single)
      expect(maxAbsDiff(row(out.logits, b), row(ref.logits, b))).toBeLessThan(2e-5)
    }
  })

  it('routes rows: probabilities sum to 1, mask and per-row top-k renormalise, explicit rows pass through', async () => {
    const { twin, inputs } = await setup(build)
    const x = syntheticFeeds(inputs, 4, 3)
    const out = await run(twin, {
      ...x,
      ...controls([
        { mix: [0, 0, 0], router: true },
        { mix: [0, 0, 0], router: true, k: 1 },
        { mix: [0, 0, 0], router: true, mask: [1, 0, 1], k: 5 },
        { mix: [0.1, 0.2, 0.7], router: false },
      ]),
    })
    const w = out.expert_weights
    const dense = Array.from(row(w, 0))
    expect(dense.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5)
    expect(dense.every((v) => v > 0)).toBe(true)
    const top1 = Array.from(row(w, 1))
    expect(top1.filter((v) => v === 1)).toHaveLength(1)
    expect(top1.filter((v) => v === 0)).toHaveLength(T - 1)
    const masked = Array.from(row(w, 2))
    expect(masked[1]).toBe(0)
    expect((masked[0] as number) + (masked[2] as number)).toBeCloseTo(1, 5)
    expect(Array.from(row(w, 3))).toEqual(Array.from(Float32Array.of(0.1, 0.2, 0.7)))
  })

  it('abstains (issue #18): router rows less sure than abstain_below apply no expert and compute the shared model', async () => {
    const { twin, inputs, sharedModel } = await setup(build)
    const B = 4
    const x = syntheticFeeds(inputs, B, 5)
    const routed = await run(twin, {
      ...x,
      ...controls(Array(B).fill({ mix: [0, 0, 0], router: true })),
    })
    // The router's confidence per row: its largest weight (dense routing, no mask).
    const sure = Array.from({ length: B }, (_, b) => Math.max(...row(routed.expert_weights, b)))
    expect(Math.min(...sure)).toBeLessThan(1)
    const rows = [
      { mix: [0, 0, 0], router: true, abstain: (sure[0] as number) + 1e-3 }, // less sure: abstains
      { mix: [0, 0, 0], router: true, abstain: (sure[1] as number) - 1e-3 }, // sure enough
      // Confidence is taken before top_k (after it, a top-1 row would always be sure): still abstains.
      { mix: [0, 0, 0], router: true, k: 1, abstain: (sure[2] as number) + 1e-3 },
      { mix: [0.2, 0.3, 0.5], router: false, abstain: 1 }, // explicit rows never abstain
    ]
    const out = await run(twin, { ...x, ...controls(rows) })
    const shared = await run(sharedModel, x)
    expect(Array.from(row(out.expert_weights, 0))).toEqual([0, 0, 0])
    expect(Array.from(row(out.logits, 0))).toEqual(Array.from(row(shared.logits, 0)))
    expect(Array.from(row(out.expert_weights, 1))).toEqual(
      Array.from(row(routed.expert_weights, 1)),
    )
    expect(Array.from(row(out.logits, 1))).toEqual(Array.from(row(routed.logits, 1)))
    expect(Array.from(row(out.expert_weights, 2))).toEqual([0, 0, 0])
    expect(Array.from(row(out.expert_weights, 3))).toEqual(
      Array.from(Float32Array.of(0.2, 0.3, 0.5)),
    )
    // The check has teeth: a routed row is not the shared model.
    expect(maxAbsDiff(row(routed.logits, 0), row(shared.logits, 0))).toBeGreaterThan(1e-3)

    // With experts excluded, the confidence is over the experts the row allows (renormalised).
    const mask = [1, 1, 0]
    const allowed = await run(twin, {
      ...x,
      ...controls(Array(B).fill({ mix: [0, 0, 0], router: true, mask })),
    })
    const c0 = Math.max(...row(allowed.expert_weights, 0))
    const edge = await run(twin, {
      ...x,
      ...controls([
        { mix: [0, 0, 0], router: true, mask, abstain: c0 - 1e-3 },
        { mix: [0, 0, 0], router: true, mask, abstain: 1 },
        { mix: [0, 0, 0], router: true, mask, abstain: 0 },
        { mix: [0, 0, 0], router: true, mask },
      ]),
    })
    expect(Array.from(row(edge.expert_weights, 0))).toEqual(
      Array.from(row(allowed.expert_weights, 0)),
    )
    expect(Array.from(row(edge.expert_weights, 1))).toEqual([0, 0, 0])
    expect(Array.from(row(edge.expert_weights, 2))).toEqual(
      Array.from(row(allowed.expert_weights, 2)),
    )
  })
})

describe('twin graph naming convention', () => {
  it('writes <w>.twin_u/_v/_sigma/_expert_of_rank and <p>.twin_delta with the documented shapes', async () => {
    const { twin } = await setup(mlpModel)
    const inits = new Map(
      (twin.graph?.initializer ?? []).map((t) => [t.name ?? '', t.dims?.map(Number)]),
    )
    const R = 3 * 12 // identity factors: T × cols for fc2.weight [16, 12]
    expect(inits.get(`fc2.weight${TWIN_FACTOR_SUFFIXES.u}`)).toEqual([16, R])
    expect(inits.get(`fc2.weight${TWIN_FACTOR_SUFFIXES.v}`)).toEqual([R, 12])
    expect(inits.get(`fc2.weight${TWIN_FACTOR_SUFFIXES.sigma}`)).toEqual([R])
    expect(inits.get(`fc2.weight${TWIN_FACTOR_SUFFIXES.expertOfRank}`)).toEqual([R])
    expect(inits.get(`head.weight${TWIN_FACTOR_SUFFIXES.u}`)).toEqual([4, 3 * 12]) // stored [out, in]
    expect(inits.get(`fc1.bias${TWIN_FACTOR_SUFFIXES.delta}`)).toEqual([3, 16])
    expect(inits.get('fc2.weight')).toEqual([16, 12])
  })
})
