/**
 * Fixed-sample 95% intervals for an arm's mean reward (what the per-arm table shows; the comparison with the
 * control uses the always-valid confidence sequence in msprt.ts instead).
 * @module
 */

/** z for a two-sided 95% interval. */
export const Z95 = 1.959963984540054

/**
 * Wilson score interval for a proportion: keeps inside [0, 1] and stays sensible at 0 or n successes, where
 * the normal interval collapses to a point.
 * @see https://doi.org/10.1080/01621459.1927.10502953 (Wilson 1927)
 */
export function wilsonInterval(successes: number, n: number, z = Z95): [number, number] {
  if (n <= 0) return [0, 1]
  const p = successes / n
  const z2 = z * z
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n)
  const half = ((z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) as number
  return [Math.max(0, centre - half), Math.min(1, centre + half)]
}

/** mean ± z·s/√n, clipped to [lo, hi] (rewards live in [0, 1]). */
export function normalInterval(
  mean: number,
  sampleVariance: number,
  n: number,
  z = Z95,
  bounds: [number, number] = [0, 1],
): [number, number] {
  if (n <= 1) return bounds
  const half = z * Math.sqrt(sampleVariance / n)
  return [Math.max(bounds[0], mean - half), Math.min(bounds[1], mean + half)]
}

/** The reward interval for an arm: Wilson when every reward is 0 or 1, the normal interval otherwise. */
export function rewardInterval(rewards: readonly number[]): {
  mean: number
  ci95: [number, number]
} {
  const n = rewards.length
  let sum = 0
  let binary = true
  for (const r of rewards) {
    sum += r
    if (r !== 0 && r !== 1) binary = false
  }
  const mean = n > 0 ? sum / n : 0
  if (binary) return { mean, ci95: wilsonInterval(sum, n) }
  let ss = 0
  for (const r of rewards) ss += (r - mean) ** 2
  return { mean, ci95: normalInterval(mean, n > 1 ? ss / (n - 1) : 0, n) }
}
