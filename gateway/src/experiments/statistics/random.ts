/**
 * Random draws for Thompson sampling: a seedable generator (tests and simulations replay exactly) and Gamma/Beta
 * samplers.
 * @module
 */

/** Uniform [0, 1) generator. */
export type Rng = () => number

/** mulberry32: a small, fast 32-bit generator, good enough for Monte Carlo over a few arms. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A generator seeded from the platform's CSPRNG (production draws). */
export function randomRng(): Rng {
  return seededRng(crypto.getRandomValues(new Uint32Array(1))[0] ?? 1)
}

function standardNormal(rng: Rng): number {
  // Box-Muller; 1 - u keeps the log away from 0.
  const u = 1 - rng()
  const v = rng()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/**
 * Gamma(shape, 1) by Marsaglia and Tsang's squeeze method; shape < 1 through the boost Gamma(a) = Gamma(a+1)·U^(1/a).
 * @see https://doi.org/10.1145/358407.358414 (Marsaglia, Tsang 2000)
 */
export function sampleGamma(shape: number, rng: Rng): number {
  if (shape < 1) return sampleGamma(shape + 1, rng) * (1 - rng()) ** (1 / shape)
  const d = shape - 1 / 3
  const c = 1 / Math.sqrt(9 * d)
  for (;;) {
    let x: number
    let v: number
    do {
      x = standardNormal(rng)
      v = 1 + c * x
    } while (v <= 0)
    v = v * v * v
    const u = 1 - rng()
    if (u < 1 - 0.0331 * x ** 4) return d * v
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v
  }
}

/** Beta(a, b) as Ga/(Ga + Gb). */
export function sampleBeta(a: number, b: number, rng: Rng): number {
  const x = sampleGamma(a, rng)
  const y = sampleGamma(b, rng)
  return x / (x + y)
}
