import { describe, expect, it } from 'vitest'
import { murmur3 } from '../src/experiments/murmur3.ts'
import { decide } from '../src/experiments/statistics/decision.ts'
import { rewardInterval, wilsonInterval } from '../src/experiments/statistics/intervals.ts'
import {
  confidenceHalfWidth,
  logMixtureLikelihoodRatio,
  SequentialComparison,
} from '../src/experiments/statistics/msprt.ts'
import { quantileIndex, quantileSorted } from '../src/experiments/statistics/quantile.ts'
import { sampleBeta, sampleGamma, seededRng } from '../src/experiments/statistics/random.ts'
import { probabilityBest, sharesWithFloor } from '../src/experiments/statistics/thompson.ts'

describe('murmur3 (x86, 32-bit)', () => {
  it('matches the reference implementation’s published vectors', () => {
    expect(murmur3('', 0)).toBe(0)
    expect(murmur3('', 1)).toBe(0x514e28b7)
    expect(murmur3('', 0xffffffff)).toBe(0x81f16f39)
    expect(murmur3('aaaa', 0x9747b28c)).toBe(0x5a97808a)
    expect(murmur3('abc', 0)).toBe(0xb3dd93fa)
    expect(murmur3('hello', 0)).toBe(0x248bfa47)
    expect(murmur3('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723)
  })
})

/** Λ by numerical integration of the likelihood ratio over the N(0, τ²) mixture (independent of the closed form). */
function lambdaByQuadrature(diff: number, v: number, tau2: number): number {
  const tau = Math.sqrt(tau2)
  const lo = -12 * tau + Math.min(0, diff)
  const hi = 12 * tau + Math.max(0, diff)
  const steps = 200_000
  const h = (hi - lo) / steps
  let sum = 0
  for (let i = 0; i <= steps; i++) {
    const theta = lo + i * h
    // φ(Δ; θ, V) / φ(Δ; 0, V) · φ(θ; 0, τ²)
    const ratio = Math.exp((diff * diff - (diff - theta) ** 2) / (2 * v))
    const prior = Math.exp(-(theta * theta) / (2 * tau2)) / Math.sqrt(2 * Math.PI * tau2)
    sum += (i === 0 || i === steps ? 0.5 : 1) * ratio * prior
  }
  return sum * h
}

// Fixed paired data: control x and treatment y, as a reference computation consumes them.
const X = [0.2, 0.9, 0.4, 0.6, 0.1, 0.8, 0.5, 0.3, 0.7, 0.45, 0.55, 0.35, 0.65, 0.25, 0.75, 0.5]
const Y = [0.6, 1.0, 0.7, 0.9, 0.4, 0.95, 0.8, 0.5, 0.85, 0.7, 0.9, 0.6, 0.75, 0.55, 0.95, 0.8]

describe('mSPRT', () => {
  it('closed-form Λ equals the mixture integral computed numerically', () => {
    for (const [diff, v, tau2] of [
      [0.1, 0.01, 0.01],
      [-0.05, 0.002, 0.01],
      [0.3, 0.05, 0.0025],
      [0, 0.01, 0.04],
      [0.02, 0.0005, 0.01],
    ] as const) {
      const closed = Math.exp(logMixtureLikelihoodRatio(diff, v, tau2))
      expect(closed).toBeCloseTo(lambdaByQuadrature(diff, v, tau2), 6)
    }
  })

  it('p-value on fixed paired data equals the reference formula of Johari et al. (known σ), look by look', () => {
    const sigma2 = 0.09
    const tau2 = 0.01
    const t = new SequentialComparison({ tau2, burnIn: 1, knownVariance: sigma2, alpha: 0.05 })
    let refP = 1
    for (let n = 1; n <= X.length; n++) {
      // One look per pair, as the reference formula looks.
      t.add('control', X[n - 1] as number, false)
      t.add('treatment', Y[n - 1] as number)
      // KDD'17 §4 (paired observations z_i = y_i − x_i, Var z = 2σ²):
      //   Λ_n = sqrt(2σ²/(2σ² + nτ²)) · exp(n²τ²(z̄_n)² / (4σ²(2σ² + nτ²)))
      const zbar = Y.slice(0, n).reduce((s, y, i) => s + y - (X[i] as number), 0) / n
      const lambda =
        Math.sqrt((2 * sigma2) / (2 * sigma2 + n * tau2)) *
        Math.exp((n * n * tau2 * zbar * zbar) / (4 * sigma2 * (2 * sigma2 + n * tau2)))
      refP = Math.min(refP, 1 / lambda)
      expect(Math.exp(t.logLambda ?? Number.NaN) / lambda).toBeCloseTo(1, 12)
      expect(t.pValue).toBeCloseTo(Math.min(1, refP), 12)
    }
    // 16 pairs are some evidence of the difference, not yet enough at α = 0.05.
    expect(t.pValue).toBeGreaterThan(0.05)
    expect(t.pValue).toBeLessThan(1)
    expect(t.difference).toBeCloseTo(
      Y.reduce((s, y) => s + y, 0) / Y.length - X.reduce((s, x) => s + x, 0) / X.length,
      12,
    )
  })

  it('the p-value never rises and the confidence sequence only narrows', () => {
    const rng = seededRng(7)
    const t = new SequentialComparison({ tau2: 0.01, burnIn: 10, alpha: 0.05 })
    let lastP = 1
    let last: [number, number] | undefined
    for (let i = 0; i < 2000; i++) {
      t.add(rng() < 0.5 ? 'control' : 'treatment', rng() < 0.5 ? 1 : 0)
      expect(t.pValue).toBeLessThanOrEqual(lastP)
      lastP = t.pValue
      if (last && t.interval) {
        expect(t.interval[0]).toBeGreaterThanOrEqual(last[0] - 1e-12)
        expect(t.interval[1]).toBeLessThanOrEqual(last[1] + 1e-12)
      }
      last = t.interval
    }
  })

  it('stays in burn-in until each side has enough observations', () => {
    const t = new SequentialComparison({ tau2: 0.01, burnIn: 5, alpha: 0.05 })
    for (let i = 0; i < 4; i++) {
      t.add('control', 0)
      t.add('treatment', 1)
    }
    expect(t.variance()).toBeUndefined()
    expect(t.pValue).toBe(1)
    expect(t.interval).toBeUndefined()
    t.add('control', 1)
    t.add('treatment', 1)
    expect(t.variance()).toBeGreaterThan(0)
    expect(t.pValue).toBeLessThan(1)
  })

  it('A/A tests with a look after every observation keep false positives under α; naive looks do not', () => {
    const alpha = 0.05
    const sims = 1000
    const perSim = 2000
    for (const p of [0.5, 0.2]) {
      const rng = seededRng(p === 0.5 ? 11 : 12)
      let msprtHits = 0
      let naiveHits = 0
      for (let s = 0; s < sims; s++) {
        const t = new SequentialComparison({ tau2: 0.01, burnIn: 20, alpha })
        let naive = false
        for (let i = 0; i < perSim; i++) {
          t.add(rng() < 0.5 ? 'control' : 'treatment', rng() < p ? 1 : 0)
          // The fixed-sample z-test, read after every observation (what peeking does).
          const v = t.variance()
          if (!naive && v !== undefined && v > 0 && Math.abs(t.difference) / Math.sqrt(v) > 1.96)
            naive = true
        }
        if (t.pValue <= alpha) msprtHits++
        if (naive) naiveHits++
      }
      expect(msprtHits / sims, `mSPRT false-positive rate at p=${p}`).toBeLessThan(alpha)
      expect(naiveHits / sims, `peeking z-test at p=${p}`).toBeGreaterThan(3 * alpha)
    }
  })

  it('detects a real difference, and its confidence sequence covers the truth', () => {
    const rng = seededRng(3)
    const sims = 200
    let detected = 0
    let covered = 0
    for (let s = 0; s < sims; s++) {
      const t = new SequentialComparison({ tau2: 0.01, burnIn: 20, alpha: 0.05 })
      for (let i = 0; i < 2000; i++) {
        const side = rng() < 0.5 ? 'control' : 'treatment'
        t.add(side, rng() < (side === 'control' ? 0.5 : 0.6) ? 1 : 0)
      }
      if (t.pValue <= 0.05 && t.difference > 0) detected++
      if (t.interval && t.interval[0] <= 0.1 && 0.1 <= t.interval[1]) covered++
    }
    expect(detected / sims).toBeGreaterThan(0.8)
    expect(covered / sims).toBeGreaterThan(0.95)
  })

  it('the confidence half-width is where Λ(θ0) crosses 1/α', () => {
    const v = 0.004
    const tau2 = 0.01
    const half = confidenceHalfWidth(v, tau2, 0.05)
    expect(Math.exp(logMixtureLikelihoodRatio(half, v, tau2))).toBeCloseTo(1 / 0.05, 8)
  })
})

describe('intervals, quantiles, decisions', () => {
  it('Wilson interval matches known values', () => {
    // 8 of 10 (Newcombe 1998, method 3): [0.4902, 0.9433]
    const [lo, hi] = wilsonInterval(8, 10)
    expect(lo).toBeCloseTo(0.4902, 4)
    expect(hi).toBeCloseTo(0.9433, 4)
    expect(wilsonInterval(0, 10)[0]).toBe(0)
    expect(wilsonInterval(10, 10)[1]).toBeCloseTo(1, 12)
  })

  it('reward interval: Wilson for 0/1 rewards, normal for fractional ones', () => {
    expect(rewardInterval([1, 1, 0, 1]).ci95).toEqual(wilsonInterval(3, 4))
    const r = rewardInterval([0.5, 0.7, 0.6, 0.8])
    expect(r.mean).toBeCloseTo(0.65, 12)
    const sd = Math.sqrt(((0.15 ** 2 + 0.05 ** 2) * 2) / 3)
    expect(r.ci95[0]).toBeCloseTo(0.65 - 1.959963984540054 * (sd / 2), 12)
  })

  it('nearest-rank quantiles', () => {
    const xs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    expect(quantileSorted(xs, 0.5)).toBe(5)
    expect(quantileSorted(xs, 0.95)).toBe(10)
    expect(quantileSorted([7], 0.95)).toBe(7)
    expect(quantileIndex(10, 0.5)).toBe(4)
    expect(quantileIndex(100, 0.95)).toBe(94)
  })

  it('decision labels', () => {
    const base = { control: false, stopped: false, alpha: 0.05 }
    expect(decide({ ...base, pValue: 0.01, difference: 0.1 })).toBe('arm_better')
    expect(decide({ ...base, pValue: 0.01, difference: -0.1 })).toBe('arm_worse')
    expect(decide({ ...base, pValue: 0.2, difference: 0.1 })).toBe('keep_running')
    expect(decide({ ...base, stopped: true, pValue: 0.01, difference: 0.1 })).toBe('guardrail_stop')
    expect(decide({ ...base, control: true, pValue: undefined, difference: undefined })).toBe(
      'control',
    )
  })
})

describe('Thompson sampling', () => {
  it('Gamma and Beta samplers have the right means', () => {
    const rng = seededRng(5)
    const n = 20_000
    let g = 0
    let gSmall = 0
    let b = 0
    for (let i = 0; i < n; i++) {
      g += sampleGamma(3.5, rng)
      gSmall += sampleGamma(0.4, rng)
      b += sampleBeta(2, 6, rng)
    }
    expect(g / n).toBeCloseTo(3.5, 1)
    expect(gSmall / n).toBeCloseTo(0.4, 1)
    expect(b / n).toBeCloseTo(0.25, 2)
  })

  it('P(best) favours the arm with the better posterior; shares keep a floor', () => {
    const rng = seededRng(9)
    const p = probabilityBest(
      [
        { alpha: 30, beta: 70 },
        { alpha: 60, beta: 40 },
        { alpha: 31, beta: 69 },
      ],
      rng,
    )
    expect(p.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 12)
    expect(p[1]).toBeGreaterThan(0.99)
    const shares = sharesWithFloor(p, 0.05)
    expect(shares.reduce((s, x) => s + x, 0)).toBeCloseTo(1, 12)
    for (const s of shares) expect(s).toBeGreaterThanOrEqual(0.05)
    expect(
      probabilityBest(
        [
          { alpha: 1, beta: 1 },
          { alpha: 1, beta: 1 },
        ],
        rng,
      )[0],
    ).toBeCloseTo(0.5, 1)
  })
})
