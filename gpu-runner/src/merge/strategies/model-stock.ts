/**
 * `model_stock`: interpolate between θ₀ and the experts' average by t = N·cosθ / (1 + (N−1)·cosθ), where cosθ
 * is the mean pairwise cosine between task vectors (per tensor, or per row with `filter_wise`); needs N ≥ 2.
 * Follows mergekit: cosines clamp the norm product at 1e-6 and the result at [−1, 1]; no expert weights.
 * @see https://arxiv.org/abs/2403.19522
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { MergeStrategy } from '../types.ts'

/** mergekit's clamp on ‖δ_i‖·‖δ_j‖, so zero task vectors give cosθ = 0 and t = 0 (the base). */
const NORM_PRODUCT_MIN = 1e-6

export const modelStock: MergeStrategy<'model_stock'> = {
  name: 'model_stock',
  referenceUrl: 'https://arxiv.org/abs/2403.19522',
  merge(spec, ctx) {
    const { base, experts, shape } = ctx
    const N = experts.length
    if (N < 2)
      throw new AppError(
        'INVALID_REQUEST',
        `model_stock needs at least 2 experts besides the base, got ${N}`,
      )
    const n = base.length
    // filter_wise: one ratio per line along the last dimension (mergekit's dim=-1); else one per tensor.
    const rowLen = spec.filter_wise && shape.length >= 1 ? (shape[shape.length - 1] as number) : n
    const out = new Float32Array(n)
    if (n === 0) return out
    const dots = new Float64Array(N * N) // [N, N], Gram matrix of the row's task vectors
    for (let start = 0; start < n; start += rowLen) {
      dots.fill(0)
      for (let j = start; j < start + rowLen; j++) {
        const b = base[j] as number
        for (let p = 0; p < N; p++) {
          const dp = ((experts[p] as Float32Array)[j] as number) - b
          for (let q = p; q < N; q++)
            dots[p * N + q] =
              (dots[p * N + q] as number) + dp * (((experts[q] as Float32Array)[j] as number) - b)
        }
      }
      let cosSum = 0
      for (let p = 0; p < N; p++)
        for (let q = p + 1; q < N; q++) {
          const norms = Math.sqrt(dots[p * N + p] as number) * Math.sqrt(dots[q * N + q] as number)
          const c = (dots[p * N + q] as number) / Math.max(norms, NORM_PRODUCT_MIN)
          cosSum += Math.min(1, Math.max(-1, c))
        }
      const cos = cosSum / ((N * (N - 1)) / 2)
      const denom = 1 + (N - 1) * cos
      if (Math.abs(denom) < 1e-12)
        throw new AppError(
          'MERGE_FAILED',
          `model_stock: task vectors of ${ctx.tensorName} point in opposite directions (mean cosine ${cos}), the interpolation ratio is undefined`,
        )
      const t = (N * cos) / denom
      for (let j = start; j < start + rowLen; j++) {
        let avg = 0
        for (let p = 0; p < N; p++) avg += (experts[p] as Float32Array)[j] as number
        out[j] = (t * avg) / N + (1 - t) * (base[j] as number)
      }
    }
    return out
  },
}
