/**
 * `dare_ties`: DARE drop-and-rescale followed by TIES sign election and the agreeing-entries sum.
 * @see https://arxiv.org/abs/2311.03099
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const dareTies: MergeStrategy<'dare_ties'> = {
  name: 'dare_ties',
  referenceUrl: 'https://arxiv.org/abs/2311.03099',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'random',
      consensus: spec.majority_sign_method,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
