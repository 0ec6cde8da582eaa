/**
 * Seeded, platform-independent random numbers for the random merge methods (DARE, DELLA) and the randomized
 * SVD. Streams are keyed by strings (tensor name, expert name) as well as the numeric seed, so a tensor's
 * result does not depend on the order tensors or experts are processed in.
 * @module
 */

/** A stream of random numbers. */
export interface Rng {
  /** Uniform in [0, 1), 32 bits of resolution. */
  uniform(): number
  /** Standard normal (Box–Muller). */
  normal(): number
}

/** 128 bits of state from the seed and keys (cyrb128-style mixing; only needs to spread, not to be secret). */
function hashState(seed: number, keys: readonly string[]): [number, number, number, number] {
  let h1 = 1779033703 ^ seed
  let h2 = 3144134277 ^ Math.imul(seed, 0x9e3779b1)
  let h3 = 1013904242
  let h4 = 2773480762
  const text = keys.map((k) => `${k.length}:${k}`).join('|')
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    h1 = h2 ^ Math.imul(h1 ^ c, 597399067)
    h2 = h3 ^ Math.imul(h2 ^ c, 2869860233)
    h3 = h4 ^ Math.imul(h3 ^ c, 951274213)
    h4 = h1 ^ Math.imul(h4 ^ c, 2716044179)
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067)
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233)
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213)
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179)
  h1 ^= h2 ^ h3 ^ h4
  h2 ^= h1
  h3 ^= h1
  h4 ^= h1
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0]
}

/**
 * A seeded generator (sfc32: small, fast, passes PractRand to 2^40+ bytes). Same seed and keys, same stream, on
 * every platform: only 32-bit integer arithmetic.
 * @example createRng(0, 'dare', 'layer.0.q.weight', 'medical').uniform()
 */
export function createRng(seed: number, ...keys: string[]): Rng {
  let [a, b, c, d] = hashState(seed >>> 0, keys)
  const next = (): number => {
    const t = (((a + b) | 0) + d) | 0
    d = (d + 1) | 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) | 0
    c = (c << 21) | (c >>> 11)
    c = (c + t) | 0
    return t >>> 0
  }
  // Discard the first outputs: sfc32 mixes weak seeds within a dozen steps.
  for (let i = 0; i < 15; i++) next()
  let spare: number | null = null
  return {
    uniform: () => next() / 4294967296,
    normal: () => {
      if (spare !== null) {
        const s = spare
        spare = null
        return s
      }
      // u1 in (0, 1] so the log is finite.
      const u1 = (next() + 1) / 4294967296
      const u2 = next() / 4294967296
      const r = Math.sqrt(-2 * Math.log(u1))
      spare = r * Math.sin(2 * Math.PI * u2)
      return r * Math.cos(2 * Math.PI * u2)
    },
  }
}
