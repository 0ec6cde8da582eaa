/**
 * `dare_linear`: DARE with a plain weighted sum. Drop each task-vector entry with probability 1 − density (seeded Bernoulli), rescale the survivors by L1-norm matching, then task arithmetic.
 * @see https://arxiv.org/abs/2311.03099
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const dareLinear: MergeStrategy<'dare_linear'> = {
  name: 'dare_linear',
  referenceUrl: 'https://arxiv.org/abs/2311.03099',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'random',
      consensus: null,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
