/**
 * `consensus`: TALL-mask consensus merging. With weighted task vectors x_i = w_i·(θ_i − θ₀) and
 * τ_MTL = Σ x_i, expert i claims an entry when |x_i| > λ_t·|τ_MTL − x_i| (`tall_mask_lambda`); entries that
 * fewer than `k` experts claim are dropped from τ_MTL ("selfish" and "catastrophic" weights), and the rest is
 * added back as task arithmetic: θ₀ + lambda·(mask ⊙ τ_MTL) (divided by Σ w_i with normalize).
 * @see https://arxiv.org/abs/2405.07813
 * @module
 */
import { AppError } from '@twinserve/shared'
import { tallConsensus } from '../consensus.ts'
import { taskVectors } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const consensus: MergeStrategy<'consensus'> = {
  name: 'consensus',
  referenceUrl: 'https://arxiv.org/abs/2405.07813',
  merge(spec, ctx) {
    const T = ctx.experts.length
    if (spec.k > T)
      throw new AppError(
        'INVALID_REQUEST',
        `consensus: k=${spec.k} needs at least ${spec.k} experts, got ${T} (every entry would be dropped)`,
      )
    const weights = ctx.names.map((name) => spec.experts[name]?.weight ?? 1)
    const weighted = taskVectors(ctx).map((d, i) => {
      const w = weights[i] as number
      for (let j = 0; j < d.length; j++) d[j] = (d[j] as number) * w
      return d
    })
    const kept = tallConsensus(weighted, spec.tall_mask_lambda, spec.k)
    const total = weights.reduce((a, b) => a + b, 0)
    const divisor = spec.normalize && Math.abs(total) >= 1e-8 ? total : 1
    const scale = spec.lambda / divisor
    const out = new Float32Array(ctx.base.length)
    for (let j = 0; j < out.length; j++)
      out[j] = (ctx.base[j] as number) + (kept[j] as number) * scale
    return out
  },
}
