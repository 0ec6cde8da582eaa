/**
 * `breadcrumbs`: Model Breadcrumbs. Remove the `gamma` largest-magnitude outliers and the smallest entries down to `density`, then task arithmetic.
 * @see https://arxiv.org/abs/2312.06795
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const breadcrumbs: MergeStrategy<'breadcrumbs'> = {
  name: 'breadcrumbs',
  referenceUrl: 'https://arxiv.org/abs/2312.06795',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'magnitude_outliers',
      consensus: null,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
