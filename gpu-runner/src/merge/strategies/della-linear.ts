/**
 * `della_linear`: DELLA MagPrune followed by a plain weighted sum (no sign election).
 * @see https://arxiv.org/abs/2406.11617
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const dellaLinear: MergeStrategy<'della_linear'> = {
  name: 'della_linear',
  referenceUrl: 'https://arxiv.org/abs/2406.11617',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'della_magprune',
      consensus: null,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
