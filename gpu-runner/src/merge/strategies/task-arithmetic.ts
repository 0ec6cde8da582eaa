/**
 * `task_arithmetic`: θ₀ + λ·Σ w_i·(θ_i − θ₀).
 * @see https://arxiv.org/abs/2212.04089
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const taskArithmetic: MergeStrategy<'task_arithmetic'> = {
  name: 'task_arithmetic',
  referenceUrl: 'https://arxiv.org/abs/2212.04089',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: null,
      consensus: null,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: false,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
