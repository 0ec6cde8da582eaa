/**
 * Generalized task arithmetic, the one engine behind task_arithmetic, TIES, DARE, Breadcrumbs and DELLA
 * (mergekit's `GeneralizedTaskArithmeticMerge`): per expert δ_i = θ_i − θ₀, sparsify, weight; then either the
 * sign-consensus mix or a plain sum; divide by Σ mask·weight when normalizing; × lambda; + θ₀.
 * @see https://github.com/arcee-ai/mergekit/blob/main/mergekit/merge_methods/generalized_task_arithmetic.py
 * @module
 */
import type { MajoritySignMethod } from '@twinserve/shared'
import { signConsensusBlocks } from './consensus.ts'
import { type SparsificationMethod, sparsify } from './sparsify.ts'
import type { MergeContext } from './types.ts'

/** Per-expert parameters as a method's spec resolves them for expert i. */
export interface ExpertParams {
  weight: number
  density: number
  gamma: number
  epsilon: number
}

export interface GtaOptions {
  sparsification: SparsificationMethod | null
  consensus: MajoritySignMethod | null
  lambda: number
  normalize: boolean
  rescale: boolean
  params: readonly ExpertParams[] // [T]
}

/** The parameters a spec can give globally and override per expert. */
export interface ExpertParamSource {
  density?: number
  gamma?: number
  epsilon?: number
  experts: Record<string, { weight?: number; density?: number; gamma?: number; epsilon?: number }>
}

/** Resolves each expert's parameters: its own entry, else the global value; weight defaults to 1. */
export function resolveExpertParams(
  spec: ExpertParamSource,
  names: readonly string[],
): ExpertParams[] {
  return names.map((name) => {
    const own = spec.experts[name]
    return {
      weight: own?.weight ?? 1,
      density: own?.density ?? spec.density ?? 1,
      gamma: own?.gamma ?? spec.gamma ?? 0,
      epsilon: own?.epsilon ?? spec.epsilon ?? 0,
    }
  })
}

/** mergekit replaces a plain-sum divisor this close to 0 by 1. */
const SUM_DIVISOR_EPS = 1e-8

/** Task vectors δ_i = θ_i − θ₀ in float32 (the base dtype, as mergekit computes them). */
export function taskVectors(ctx: MergeContext): Float32Array[] {
  const { base, experts } = ctx
  return experts.map((theta) => {
    const d = new Float32Array(base.length)
    for (let j = 0; j < d.length; j++) d[j] = (theta[j] as number) - (base[j] as number)
    return d
  })
}

export function generalizedTaskArithmetic(ctx: MergeContext, opts: GtaOptions): Float32Array {
  const { base } = ctx
  const n = base.length
  const weights = opts.params.map((p) => p.weight)
  // δ_i → sparsify, each expert's array reused in place (one [n] buffer per expert alive); the weights are
  // applied inside the mixing loops rather than in a pass of their own.
  const sparse = taskVectors(ctx).map((delta, i) => {
    const p = opts.params[i] as ExpertParams
    return opts.sparsification
      ? sparsify(delta, {
          method: opts.sparsification,
          density: p.density,
          rescale: opts.rescale,
          gamma: p.gamma,
          epsilon: p.epsilon,
          shape: ctx.shape,
          rng: ctx.rngFor(i),
        })
      : delta
  })

  const out = new Float32Array(n)
  if (opts.consensus) {
    const { normalize, lambda } = opts
    signConsensusBlocks(sparse, weights, opts.consensus, (start, len, sum, divisor) => {
      for (let j = 0; j < len; j++) {
        const d = divisor[j] as number
        const mixed = normalize ? (sum[j] as number) / (d === 0 ? 1 : d) : (sum[j] as number)
        out[start + j] = (base[start + j] as number) + mixed * lambda
      }
    })
  } else {
    const total = weights.reduce((a, b) => a + b, 0)
    const divisor = opts.normalize && Math.abs(total) >= SUM_DIVISOR_EPS ? total : 1
    const scale = opts.lambda / divisor
    const acc = new Float64Array(n)
    // Expert-major: each array is read sequentially.
    sparse.forEach((d, i) => {
      const w = weights[i] as number
      for (let j = 0; j < n; j++) acc[j] = (acc[j] as number) + w * (d[j] as number)
    })
    for (let j = 0; j < n; j++) out[j] = (base[j] as number) + (acc[j] as number) * scale
  }
  return out
}
