/**
 * Task-vector sparsifiers, as mergekit's `sparsify.py` defines them. Each zeroes entries of one expert's δ (its
 * own copy, modified in place) so that about a `density` fraction remains; `sparsify` dispatches to them and,
 * with `rescale`, scales the survivors so the L1 norm matches the original (mergekit's `rescaled_masked_tensor`,
 * which equals 1/density only in expectation). Density 1 returns δ untouched.
 *
 * Deliberate divergences from mergekit, all at edges where mergekit crashes or misbehaves:
 * - `magnitude` with density·n < 1 keeps nothing (mergekit asserts).
 * - `magnitudeOutliers` with gamma·n < 1 removes no outliers (mergekit's `indices[n_bot:-0]` keeps nothing).
 * - `dellaMagprune` on a line of length 1 uses p = density (mergekit divides 0 by 0).
 * - Equal magnitudes are ranked by index (torch's argsort is unstable).
 * @see https://github.com/arcee-ai/mergekit/blob/main/mergekit/sparsify.py
 * @module
 */
import { keepRankRange } from './rank-select.ts'
import type { Rng } from './rng.ts'

export type SparsificationMethod = 'magnitude' | 'random' | 'magnitude_outliers' | 'della_magprune'

/** mergekit's tolerance below which a norm counts as zero and no rescale happens. */
const RESCALE_EPS = 1e-7

function l1(values: Float32Array): number {
  let s = 0
  for (let i = 0; i < values.length; i++) s += Math.abs(values[i] as number)
  return s
}

/** Scales the (already masked) values so their L1 norm is `before` again. */
function rescaleL1(masked: Float32Array, before: number): Float32Array {
  const after = l1(masked)
  if (before < RESCALE_EPS || after < RESCALE_EPS) return masked
  const scale = before / after
  for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] as number) * scale
  return masked
}

export interface SparsifyParams {
  method: SparsificationMethod
  density: number
  rescale: boolean
  /** magnitude_outliers */
  gamma: number
  /** della_magprune */
  epsilon: number
  shape: readonly number[]
  rng: Rng
}

/**
 * TIES trim: keeps the ⌊density·n⌋ largest |δ|.
 * @see https://arxiv.org/abs/2306.01708
 */
export function magnitude(delta: Float32Array, { density }: Pick<SparsifyParams, 'density'>): void {
  const n = delta.length
  keepRankRange(delta, n - Math.floor(density * n), n)
}

/**
 * Model Breadcrumbs: removes the ⌊gamma·n⌋ largest |δ| as outliers and the smallest until ⌊density·n⌋ remain
 * (fewer outliers are removed when both cannot hold).
 * @see https://arxiv.org/abs/2312.06795
 */
export function magnitudeOutliers(
  delta: Float32Array,
  p: Pick<SparsifyParams, 'density' | 'gamma'>,
): void {
  const { density, gamma } = p
  const n = delta.length
  const target = Math.floor(density * n)
  let nTop = Math.floor(gamma * n)
  let nBot = n - target - nTop
  if (nBot < 0) {
    nTop += nBot
    nBot = 0
  }
  keepRankRange(delta, nBot, n - nTop)
}

/**
 * DARE: keeps each entry with probability `density` (Bernoulli), draws in index order from `rng`.
 * @see https://arxiv.org/abs/2311.03099
 */
export function bernoulli(
  delta: Float32Array,
  { density, rng }: Pick<SparsifyParams, 'density' | 'rng'>,
): void {
  for (let i = 0; i < delta.length; i++) if (!(rng.uniform() < density)) delta[i] = 0
}

/**
 * DELLA MagPrune: within each line along dimension 1 (a row of a matrix; the whole tensor when 1-D), the entry
 * of ascending magnitude rank r (1..L) is kept with probability (density − ε) + 2ε·(r − 1)/(L − 1), so larger
 * entries survive more often. Draws in flat index order.
 * @see https://arxiv.org/abs/2406.11617
 */
export function dellaMagprune(
  delta: Float32Array,
  p: Pick<SparsifyParams, 'shape' | 'density' | 'epsilon' | 'rng'>,
): void {
  const { shape, density, epsilon, rng } = p
  const n = delta.length
  // mergekit unsqueezes tensors below 2-D to one row and ranks along dim 1: lines of `len` entries spaced
  // `stride` apart, one line per (index along dim 0, index over dims ≥ 2).
  const len = shape.length >= 2 ? (shape[1] as number) : n
  const stride = shape.length >= 2 ? shape.slice(2).reduce((a, b) => a * b, 1) : 1
  const probs = new Float32Array(n)
  if (len <= 1) probs.fill(density)
  else {
    const lineCount = n / len
    // Sort keys pack |δ|'s bits (31) above the position (≤ 22 bits) into an exact float64: one native sort
    // per line gives stable ascending ranks.
    const keys = new Float64Array(len)
    const bits = new Uint32Array(delta.buffer, delta.byteOffset, n)
    const packable = len <= 1 << 22
    for (let line = 0; line < lineCount; line++) {
      const outer = Math.floor(line / stride)
      const inner = line % stride
      const start = outer * len * stride + inner
      let order: ArrayLike<number>
      if (packable) {
        for (let j = 0; j < len; j++)
          keys[j] = ((bits[start + j * stride] as number) & 0x7fffffff) * 4194304 + j
        keys.sort()
        order = keys
      } else {
        const idx = Array.from({ length: len }, (_, j) => j)
        const mag = (j: number) => Math.abs(delta[start + j * stride] as number)
        idx.sort((a, b) => mag(a) - mag(b) || a - b)
        order = idx
      }
      for (let r = 0; r < len; r++) {
        const j = packable ? (order[r] as number) % 4194304 : (order[r] as number)
        probs[start + j * stride] = density - epsilon + (2 * epsilon * r) / (len - 1)
      }
    }
  }
  for (let i = 0; i < n; i++) if (!(rng.uniform() < (probs[i] as number))) delta[i] = 0
}

const SPARSIFIERS: Record<SparsificationMethod, (delta: Float32Array, p: SparsifyParams) => void> =
  {
    magnitude,
    random: bernoulli,
    magnitude_outliers: magnitudeOutliers,
    della_magprune: dellaMagprune,
  }

/** Sparsifies `delta` in place by `p.method` (and rescales it with `p.rescale`); returns it. */
export function sparsify(delta: Float32Array, p: SparsifyParams): Float32Array {
  if (p.density >= 1) return delta
  const before = p.rescale ? l1(delta) : 0
  SPARSIFIERS[p.method](delta, p)
  return p.rescale ? rescaleL1(delta, before) : delta
}
