/**
 * Task-vector sparsifiers, as mergekit's `sparsify.py` defines them. Each takes one expert's δ (its own copy:
 * modified in place and returned) and keeps a `density` fraction of it; with `rescale` the survivors are scaled
 * so the L1 norm matches the original (mergekit's `rescaled_masked_tensor`, which equals 1/density only in
 * expectation). Density 1 returns δ untouched.
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

/**
 * TIES trim: keeps the ⌊density·n⌋ largest |δ|.
 * @see https://arxiv.org/abs/2306.01708
 */
export function magnitude(delta: Float32Array, density: number, rescale: boolean): Float32Array {
  if (density >= 1) return delta
  const n = delta.length
  const before = rescale ? l1(delta) : 0
  const k = Math.floor(density * n)
  keepRankRange(delta, n - k, n)
  return rescale ? rescaleL1(delta, before) : delta
}

/**
 * Model Breadcrumbs: removes the ⌊gamma·n⌋ largest |δ| as outliers and the smallest until ⌊density·n⌋ remain
 * (fewer outliers are removed when both cannot hold).
 * @see https://arxiv.org/abs/2312.06795
 */
export function magnitudeOutliers(
  delta: Float32Array,
  density: number,
  gamma: number,
  rescale: boolean,
): Float32Array {
  if (density >= 1) return delta
  const n = delta.length
  const target = Math.floor(density * n)
  let nTop = Math.floor(gamma * n)
  let nBot = n - target - nTop
  if (nBot < 0) {
    nTop += nBot
    nBot = 0
  }
  const before = rescale ? l1(delta) : 0
  keepRankRange(delta, nBot, n - nTop)
  return rescale ? rescaleL1(delta, before) : delta
}

/**
 * DARE: keeps each entry with probability `density` (Bernoulli), draws in index order from `rng`.
 * @see https://arxiv.org/abs/2311.03099
 */
export function bernoulli(
  delta: Float32Array,
  density: number,
  rescale: boolean,
  rng: Rng,
): Float32Array {
  if (density >= 1) return delta
  const before = rescale ? l1(delta) : 0
  for (let i = 0; i < delta.length; i++) if (!(rng.uniform() < density)) delta[i] = 0
  return rescale ? rescaleL1(delta, before) : delta
}

/**
 * DELLA MagPrune: within each line along dimension 1 (a row of a matrix; the whole tensor when 1-D), the entry
 * of ascending magnitude rank r (1..L) is kept with probability (density − ε) + 2ε·(r − 1)/(L − 1), so larger
 * entries survive more often. Draws in flat index order.
 * @see https://arxiv.org/abs/2406.11617
 */
export function dellaMagprune(
  delta: Float32Array,
  shape: readonly number[],
  density: number,
  epsilon: number,
  rescale: boolean,
  rng: Rng,
): Float32Array {
  if (density >= 1) return delta
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
  const before = rescale ? l1(delta) : 0
  for (let i = 0; i < n; i++) if (!(rng.uniform() < (probs[i] as number))) delta[i] = 0
  return rescale ? rescaleL1(delta, before) : delta
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

/** Dispatches to the sparsifier; `delta` is modified in place and returned. */
export function sparsify(delta: Float32Array, p: SparsifyParams): Float32Array {
  switch (p.method) {
    case 'magnitude':
      return magnitude(delta, p.density, p.rescale)
    case 'random':
      return bernoulli(delta, p.density, p.rescale, p.rng)
    case 'magnitude_outliers':
      return magnitudeOutliers(delta, p.density, p.gamma, p.rescale)
    case 'della_magprune':
      return dellaMagprune(delta, p.shape, p.density, p.epsilon, p.rescale, p.rng)
  }
}
