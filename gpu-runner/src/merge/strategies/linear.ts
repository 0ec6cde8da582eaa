/**
 * `linear`: the weighted average of the expert models, Σ w_i·θ_i / Σ w_i (or the plain weighted sum with
 * normalize=false). The base model does not take part.
 * @see https://arxiv.org/abs/2203.05482 (Model Soups)
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { MergeStrategy } from '../types.ts'

export const linear: MergeStrategy<'linear'> = {
  name: 'linear',
  referenceUrl: 'https://arxiv.org/abs/2203.05482',
  merge(spec, ctx) {
    const weights = ctx.names.map((name) => spec.experts[name]?.weight ?? 1)
    const total = weights.reduce((a, b) => a + b, 0)
    if (spec.normalize && total === 0)
      throw new AppError(
        'INVALID_REQUEST',
        'linear merge: the expert weights sum to 0, so they cannot be normalized (set normalize: false or change a weight)',
      )
    const scale = spec.normalize ? 1 / total : 1
    const n = ctx.base.length
    const out = new Float32Array(n)
    const T = ctx.experts.length
    for (let j = 0; j < n; j++) {
      let s = 0
      for (let i = 0; i < T; i++)
        s += (weights[i] as number) * ((ctx.experts[i] as Float32Array)[j] as number)
      out[j] = s * scale
    }
    return out
  },
}
