/**
 * Exclusive knowledge (Twin-Merging): v_t = θ_t − θ_shared per tensor. Matrices are compressed to a truncated
 * SVD, to a fixed rank or to the smallest rank that keeps a fraction of ‖v_t‖²_F ("energy"); vectors are kept
 * exact. The relative reconstruction error ‖v − U·diag(S)·Vᵀ‖_F / ‖v‖_F is measured (the reconstruction is
 * subtracted and summed on onnxruntime), not estimated from the discarded singular values.
 * @see https://arxiv.org/abs/2406.15479
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { LowRankFactors } from '../factors/exclusive-factors.ts'
import { defaultMatmulBackend, type MatmulBackend } from './matmul.ts'
import { jacobiSvd, randomizedSvd, type SvdFactors } from './svd.ts'

export type CompressionTarget = { rank: number } | { energy: number }

export interface CompressOptions {
  /** Extra sketch columns beyond the rank (randomized SVD). Default 10. */
  oversample?: number
  /** Power iterations (randomized SVD). Default 2. */
  powerIterations?: number
  /** Seed of the random sketch; same seed, same factors. Default 0. */
  seed?: number
  /** Where the products run; default the process-wide CPU backend. */
  backend?: MatmulBackend
}

/** One expert's factors (u [rows, rank], σ [rank] descending, vt [rank, cols]) and how well they fit. */
export interface CompressedDelta extends LowRankFactors {
  /** Components kept: the requested rank, or fewer when the matrix has lower numerical rank. */
  rank: number
  /** ‖delta − U·diag(S)·Vᵀ‖_F / ‖delta‖_F (0 for a zero delta). */
  relError: number
  /** Which SVD ran. */
  method: 'exact' | 'randomized'
}

/** Exact (float64 Jacobi) when min(m,n)²·max(m,n) is at most this: ~0.1 s of JS. */
const EXACT_MAX_WORK = 2 ** 23
/** Singular values below σ₁ times this are float32 noise, not rank. */
const RANK_TOL = 1e-6
/** Energy targets are met to within this relative slack (float32 products). */
const ENERGY_SLACK = 1e-6
/** First sketch width when searching for an energy target. */
const ENERGY_FIRST_SKETCH = 64

function frobenius2(a: Float32Array): number {
  let s = 0
  for (let i = 0; i < a.length; i++) s += (a[i] as number) * (a[i] as number)
  return s
}

/** Smallest k whose leading σ² reach `energy` of `total`; all of them, not reached, if they cannot. */
function rankForEnergy(
  S: Float32Array,
  total: number,
  energy: number,
): { k: number; reached: boolean } {
  const goal = energy * total * (1 - ENERGY_SLACK)
  let acc = 0
  for (let k = 0; k < S.length; k++) {
    acc += (S[k] as number) ** 2
    if (acc >= goal) return { k: k + 1, reached: true }
  }
  return { k: S.length, reached: false }
}

function truncate(f: SvdFactors, rows: number, cols: number, k: number): SvdFactors {
  if (k === f.r) return f
  const U = new Float32Array(rows * k)
  const V = new Float32Array(cols * k)
  for (let i = 0; i < rows; i++) U.set(f.U.subarray(i * f.r, i * f.r + k), i * k)
  for (let i = 0; i < cols; i++) V.set(f.V.subarray(i * f.r, i * f.r + k), i * k)
  return { U, S: f.S.slice(0, k), V, r: k }
}

/** Numerical rank: components above σ₁·RANK_TOL. */
function significant(S: Float32Array): number {
  const top = S[0] ?? 0
  let k = 0
  while (k < S.length && (S[k] as number) > top * RANK_TOL) k++
  return k
}

/** ‖A − U·diag(S)·Vᵀ‖_F, computed on the backend (the reconstruction never comes back to JS). */
async function residual(
  be: MatmulBackend,
  a: Float32Array,
  f: SvdFactors,
  rows: number,
  cols: number,
): Promise<number> {
  const us = new Float32Array(rows * f.r) // [rows, r], U scaled by S
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < f.r; j++)
      us[i * f.r + j] = (f.U[i * f.r + j] as number) * (f.S[j] as number)
  return Math.sqrt(Math.max(0, await be.residualSquared(a, rows, cols, us, f.V, f.r)))
}

function validate(
  delta: Float32Array,
  rows: number,
  cols: number,
  target: CompressionTarget,
): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 1 || cols < 1)
    throw new AppError('INVALID_REQUEST', `compressDelta: bad matrix shape ${rows}×${cols}`)
  if (delta.length !== rows * cols)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `compressDelta: ${delta.length} values do not fill a ${rows}×${cols} matrix`,
    )
  if ('rank' in target) {
    if (!Number.isInteger(target.rank) || target.rank < 1)
      throw new AppError(
        'INVALID_REQUEST',
        `compressDelta: rank must be a positive integer, got ${target.rank}`,
      )
  } else if (!(target.energy > 0 && target.energy <= 1))
    throw new AppError(
      'INVALID_REQUEST',
      `compressDelta: energy must lie in (0, 1], got ${target.energy}`,
    )
}

/** ‖delta‖²_F, checking finiteness on the way (a NaN or Inf makes the sum non-finite). */
function checkedFrobenius2(delta: Float32Array): number {
  const total = frobenius2(delta)
  if (Number.isFinite(total)) return total
  for (let i = 0; i < delta.length; i++)
    if (!Number.isFinite(delta[i] as number))
      throw new AppError('INVALID_MODEL', `compressDelta: value ${i} is ${delta[i]}`)
  return total
}

/**
 * Truncated SVD of one task-vector matrix (row-major [rows, cols]). Exact for small matrices; otherwise the
 * randomized range finder with power iterations, products on onnxruntime. A rank above min(rows, cols) is
 * capped there. For `energy`, the sketch widens (doubling) until the captured energy reaches the target.
 * @example
 * const { U, S, V, rank, relError } = await compressDelta(v, 768, 3072, { rank: 32 })
 */
export async function compressDelta(
  delta: Float32Array,
  rows: number,
  cols: number,
  target: CompressionTarget,
  opts: CompressOptions = {},
): Promise<CompressedDelta> {
  validate(delta, rows, cols, target)
  const be = opts.backend ?? defaultMatmulBackend()
  const minDim = Math.min(rows, cols)
  const total = checkedFrobenius2(delta)
  const empty = (): CompressedDelta => ({
    u: new Float32Array(0),
    sigma: new Float32Array(0),
    vt: new Float32Array(0),
    rank: 0,
    relError: 0,
    method: 'exact',
  })
  if (total === 0) return empty()

  const exact = minDim * minDim * Math.max(rows, cols) <= EXACT_MAX_WORK
  let factors: SvdFactors
  let k: number
  if (exact) {
    factors = jacobiSvd(delta, rows, cols)
    k =
      'rank' in target
        ? Math.min(target.rank, minDim)
        : rankForEnergy(factors.S, total, target.energy).k
  } else {
    const seed = opts.seed ?? 0
    const oversample = opts.oversample ?? 10
    const powerIterations = opts.powerIterations ?? 2
    if ('rank' in target) {
      k = Math.min(target.rank, minDim)
      factors = await randomizedSvd(be, delta, rows, cols, {
        sketch: k + oversample,
        powerIterations,
        keep: k,
        seed,
      })
    } else {
      let sketch = Math.min(ENERGY_FIRST_SKETCH, minDim)
      for (;;) {
        factors = await randomizedSvd(be, delta, rows, cols, {
          sketch,
          powerIterations,
          keep: sketch,
          seed,
        })
        const found = rankForEnergy(factors.S, total, target.energy)
        k = found.k
        // A sketch as wide as the smaller side spans the whole range: nothing more to find.
        if (found.reached || sketch >= minDim) break
        sketch = Math.min(minDim, sketch * 2)
      }
    }
  }
  k = Math.min(k, significant(factors.S), factors.r)
  const kept = truncate(factors, rows, cols, k)
  const err = await residual(be, delta, kept, rows, cols)
  const vt = new Float32Array(k * cols) // [k, cols] = Vᵀ of V [cols, k]
  for (let j = 0; j < cols; j++)
    for (let r = 0; r < k; r++) vt[r * cols + j] = kept.V[j * k + r] as number
  return {
    u: kept.U,
    sigma: kept.S,
    vt,
    rank: k,
    relError: err / Math.sqrt(total),
    method: exact ? 'exact' : 'randomized',
  }
}
