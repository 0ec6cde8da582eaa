/**
 * Power-of-two-choices load balancing: sample two distinct candidates at random and take the less loaded.
 * Nearly as good as always picking the global minimum, without herding every request onto the runner that
 * looked idlest at the last (stale) heartbeat.
 * @see https://www.eecs.harvard.edu/~michaelm/postscripts/mythesis.pdf (Mitzenmacher, "The Power of Two Choices")
 * @module
 */

/** `random` returns [0, 1) like Math.random; injected so tests can fix the draws. */
export function pickPowerOfTwo<T>(
  candidates: readonly T[],
  load: (c: T) => number,
  random: () => number = Math.random,
): T | undefined {
  const n = candidates.length
  if (n <= 1) return candidates[0]
  const i = Math.floor(random() * n)
  // Second draw from the other n-1 slots, so the two are distinct.
  let j = Math.floor(random() * (n - 1))
  if (j >= i) j += 1
  const a = candidates[i] as T
  const b = candidates[j] as T
  const la = load(a)
  const lb = load(b)
  if (la === lb) return random() < 0.5 ? a : b
  return la < lb ? a : b
}
