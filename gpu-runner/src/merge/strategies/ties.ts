/**
 * `ties`: TIES-Merging. Trim each task vector to its `density` largest magnitudes, elect a sign per entry (`majority_sign_method`), then take the disjoint mean of the agreeing entries (normalize) and add λ times it to θ₀.
 * @see https://arxiv.org/abs/2306.01708
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const ties: MergeStrategy<'ties'> = {
  name: 'ties',
  referenceUrl: 'https://arxiv.org/abs/2306.01708',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'magnitude',
      consensus: spec.majority_sign_method,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
