/**
 * Quantiles of latency samples.
 * @module
 */

/** Nearest-rank quantile (the smallest value with at least q of the sample at or below it); sorted ascending. */
export function quantileSorted(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil(q * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1] as number
}

/** 0-based index of the nearest-rank q-quantile in a sorted sample of n (for SQL OFFSET). */
export function quantileIndex(n: number, q: number): number {
  return Math.min(n, Math.max(1, Math.ceil(q * n))) - 1
}
