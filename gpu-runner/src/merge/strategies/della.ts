/**
 * `della`: DELLA-Merging. MagPrune keeps each entry with a probability that grows with its magnitude rank in its row (density ± epsilon), rescales, then TIES sign election and the normalized agreeing-entries mean.
 * @see https://arxiv.org/abs/2406.11617
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const della: MergeStrategy<'della'> = {
  name: 'della',
  referenceUrl: 'https://arxiv.org/abs/2406.11617',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'della_magprune',
      consensus: spec.majority_sign_method,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
