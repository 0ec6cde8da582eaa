/**
 * A small seeded random number generator (mulberry32) so that weight init, shuffling, permutations and noise are
 * reproducible bit-for-bit across runs and machines; Math.random cannot be seeded.
 * @module
 */

export interface Rng {
  /** Next 32-bit unsigned integer. */
  nextUint32(): number
  /** Uniform in [0, 1). */
  uniform(): number
  /** Uniform integer in [0, n). */
  int(n: number): number
  /** Standard normal (Box-Muller). */
  normal(): number
}

/** Mixes an arbitrary list of integers (seed, split, index...) into one 32-bit seed (murmur3 finaliser). */
export function mixSeed(...parts: readonly number[]): number {
  let h = 0x9e3779b9
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b)
    h ^= h >>> 13
    h = Math.imul(h, 0xc2b2ae35)
    h ^= h >>> 16
  }
  return h >>> 0
}

export function createRng(seed: number): Rng {
  let state = mixSeed(seed)
  // Box-Muller yields two normals per pair of uniforms; keep the spare so the stream stays reproducible.
  let spare: number | undefined
  const nextUint32 = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }
  const uniform = (): number => nextUint32() / 4294967296
  return {
    nextUint32,
    uniform,
    int: (n) => Math.floor(uniform() * n),
    normal: () => {
      if (spare !== undefined) {
        const s = spare
        spare = undefined
        return s
      }
      // 1 - u keeps the log argument in (0, 1].
      const r = Math.sqrt(-2 * Math.log(1 - uniform()))
      const theta = 2 * Math.PI * uniform()
      spare = r * Math.sin(theta)
      return r * Math.cos(theta)
    },
  }
}

/** Fisher-Yates shuffle in place. */
export function shuffleInPlace<T extends { length: number; [i: number]: unknown }>(
  arr: T,
  rng: Rng,
): T {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    const tmp = arr[i]
    arr[i] = arr[j]
    arr[j] = tmp
  }
  return arr
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, rng: Rng): Int32Array {
  const p = new Int32Array(n)
  for (let i = 0; i < n; i++) p[i] = i
  return shuffleInPlace(p, rng)
}
