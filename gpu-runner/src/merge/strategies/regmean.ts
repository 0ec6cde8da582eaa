/**
 * `regmean` (Jin et al., "Dataless Knowledge Fusion by Merging Weights of Language Models", ICLR 2023): for a
 * linear map y = x·W (W: [d_in, d_out]) whose inputs on expert i's data are X_i, the W that minimises
 * Σ_i ‖X_i·W − X_i·W_i‖² is W* = (Σ_i G_i)⁻¹·Σ_i G_i·W_i with G_i = X_iᵀX_i. The paper shrinks each Gram's
 * off-diagonal, G̃_i = α·G_i + (1−α)·diag(G_i), which keeps the solve well posed and interpolates towards a
 * per-input weighted average (α = 0: each input row of W averaged by the experts' input energies).
 *
 * Here, on purpose:
 * - expert weights scale the Grams (W* = (Σ w_i·G̃_i)⁻¹·Σ w_i·G̃_i·W_i), so they must be positive;
 * - each G_i is a mean over its rows (the builder divides by the number of rows), so an expert with more routing
 *   data does not outweigh the others; with equal counts this is the paper's formula;
 * - a ridge ε·I is added to every G̃_i with ε = 1e-6 × the mean of the summed Grams' diagonal (×100, up to three
 *   times, if the factorisation still fails). An input that is zero on all data (a Fashion-MNIST corner pixel)
 *   leaves its row of W undetermined; the ridge resolves it to the weighted average, and with identical Grams (or
 *   one expert) the result is exactly the average (or the expert);
 * - a tensor without Grams (biases, norms, embedding tables, any tensor not used as a linear weight) gets the
 *   weighted average Σ w_i·θ_i / Σ w_i, as in the paper's code.
 * @see https://arxiv.org/abs/2212.09849
 * @module
 */
import { AppError } from '@twinserve/shared'
import { choleskySolve } from '../cholesky.ts'
import type { MergeContext, MergeStrategy, TensorGrams } from '../types.ts'

/** The ridge, relative to the summed Grams' mean diagonal (float64 keeps a 1e6 condition number harmless). */
export const REGMEAN_RIDGE = 1e-6

function weightedAverage(
  ctx: MergeContext,
  weights: readonly number[],
  total: number,
): Float32Array {
  const out = new Float32Array(ctx.base.length)
  for (let j = 0; j < out.length; j++) {
    let s = 0
    for (let i = 0; i < weights.length; i++)
      s += (weights[i] as number) * ((ctx.experts[i] as Float32Array)[j] as number)
    out[j] = s / total
  }
  return out
}

/** Expert i's weight in the [d_in, d_out] frame, as float64. */
function inputFrame(
  theta: Float32Array,
  dIn: number,
  dOut: number,
  transposed: boolean,
): Float64Array {
  if (!transposed) return Float64Array.from(theta)
  const w = new Float64Array(dIn * dOut)
  for (let o = 0; o < dOut; o++)
    for (let k = 0; k < dIn; k++) w[k * dOut + o] = theta[o * dIn + k] as number
  return w
}

function solveRegMean(
  ctx: MergeContext,
  grams: TensorGrams,
  weights: readonly number[],
  total: number,
  alpha: number,
): Float32Array {
  const { dIn, transposed } = grams
  const dOut = ctx.base.length / dIn
  const T = ctx.experts.length
  const A = new Float64Array(dIn * dIn) // Σ w_i·G̃_i
  const B = new Float64Array(dIn * dOut) // Σ w_i·G̃_i·W_i
  const avg = new Float64Array(dIn * dOut) // Σ w_i·W_i / Σ w_i, the ridge's target
  const gt = new Float64Array(dIn * dIn)
  for (let i = 0; i < T; i++) {
    const w = weights[i] as number
    const g = grams.perExpert[i] as Float64Array
    for (let r = 0; r < dIn; r++)
      for (let c = 0; c < dIn; c++) {
        const v = g[r * dIn + c] as number
        gt[r * dIn + c] = r === c ? v : alpha * v
      }
    const W = inputFrame(ctx.experts[i] as Float32Array, dIn, dOut, transposed)
    for (let r = 0; r < dIn; r++) {
      const bRow = r * dOut
      for (let k = 0; k < dIn; k++) {
        const gv = w * (gt[r * dIn + k] as number)
        A[r * dIn + k] = (A[r * dIn + k] as number) + gv
        if (gv === 0) continue
        const wRow = k * dOut
        for (let c = 0; c < dOut; c++)
          B[bRow + c] = (B[bRow + c] as number) + gv * (W[wRow + c] as number)
      }
    }
    for (let j = 0; j < avg.length; j++)
      avg[j] = (avg[j] as number) + (w / total) * (W[j] as number)
  }
  let trace = 0
  for (let r = 0; r < dIn; r++) trace += A[r * dIn + r] as number
  // ε'·I on every G̃_i: Σ w_i·(G̃_i + ε'I) = A + ε'·Σw·I and Σ w_i·(G̃_i + ε'I)·W_i = B + ε'·Σw·avg, with
  // ε' = 1e-6 × the weight-normalised mean diagonal, so eps = ε'·Σw = 1e-6 × A's mean diagonal.
  const X = solveWithRidge(
    A,
    B,
    avg,
    dIn,
    dOut,
    Math.max((REGMEAN_RIDGE * trace) / dIn, 1e-30),
    ctx.tensorName,
  )
  const out = new Float32Array(dIn * dOut)
  if (!transposed) for (let j = 0; j < out.length; j++) out[j] = X[j] as number
  else
    for (let k = 0; k < dIn; k++)
      for (let o = 0; o < dOut; o++) out[o * dIn + k] = X[k * dOut + o] as number
  return out
}

/**
 * (A + ε·I)·X = B + ε·avg, ε growing ×100 (at most 3 times) while the factorisation fails: Grams of fewer rows than
 * inputs are singular, and rounding can leave them a hair indefinite, beyond what the smallest ridge covers.
 */
function solveWithRidge(
  A: Float64Array,
  B: Float64Array,
  avg: Float64Array,
  dIn: number,
  dOut: number,
  eps: number,
  tensorName: string,
): Float64Array {
  for (let attempt = 0; ; attempt++) {
    const e = eps * 100 ** attempt
    const a = Float64Array.from(A)
    for (let r = 0; r < dIn; r++) a[r * dIn + r] = (a[r * dIn + r] as number) + e
    const b = Float64Array.from(B, (v, j) => v + e * (avg[j] as number))
    try {
      return choleskySolve(a, dIn, b, dOut, `regmean ${tensorName}`)
    } catch (err) {
      if (attempt >= 3) throw err
    }
  }
}

export const regmean: MergeStrategy<'regmean'> = {
  name: 'regmean',
  referenceUrl: 'https://arxiv.org/abs/2212.09849',
  merge(spec, ctx) {
    const weights = ctx.names.map((name) => spec.experts[name]?.weight ?? 1)
    const total = weights.reduce((a, b) => a + b, 0)
    if (!(total > 0))
      throw new AppError('INVALID_REQUEST', 'regmean: the expert weights must be positive')
    if (!ctx.grams || ctx.base.length === 0) return weightedAverage(ctx, weights, total)
    return solveRegMean(ctx, ctx.grams, weights, total, spec.alpha)
  },
}
