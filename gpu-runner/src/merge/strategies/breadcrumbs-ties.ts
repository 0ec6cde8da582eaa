/**
 * `breadcrumbs_ties`: Model Breadcrumbs sparsification followed by TIES sign election.
 * @see https://arxiv.org/abs/2312.06795
 * @module
 */
import { generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { MergeStrategy } from '../types.ts'

export const breadcrumbsTies: MergeStrategy<'breadcrumbs_ties'> = {
  name: 'breadcrumbs_ties',
  referenceUrl: 'https://arxiv.org/abs/2312.06795',
  merge(spec, ctx) {
    return generalizedTaskArithmetic(ctx, {
      sparsification: 'magnitude_outliers',
      consensus: spec.majority_sign_method,
      lambda: spec.lambda,
      normalize: spec.normalize,
      rescale: spec.rescale,
      params: resolveExpertParams(spec, ctx.names),
    })
  },
}
