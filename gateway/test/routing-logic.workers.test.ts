import { describe, expect, it } from 'vitest'
import { CircuitBreaker } from '../src/lib/circuit-breaker.ts'
import { pickPowerOfTwo } from '../src/lib/power-of-two.ts'
import { initialBucket, takeToken } from '../src/lib/token-bucket.ts'

/** A seeded LCG, so the random draws are reproducible. */
function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

describe('pickPowerOfTwo', () => {
  it('handles 0 and 1 candidates', () => {
    expect(pickPowerOfTwo([], () => 0)).toBeUndefined()
    expect(pickPowerOfTwo(['a'], () => 0)).toBe('a')
  })

  it('with two candidates always takes the less loaded', () => {
    const random = rng(1)
    for (let i = 0; i < 100; i++)
      expect(pickPowerOfTwo(['busy', 'idle'], (c) => (c === 'busy' ? 5 : 1), random)).toBe('idle')
  })

  it('never picks the most loaded of many, and balances equal loads', () => {
    const loads = new Map([
      ['a', 0],
      ['b', 0],
      ['c', 0],
      ['d', 0],
    ])
    const random = rng(7)
    // Greedy simulation: each pick adds one unit of load to the chosen candidate.
    for (let i = 0; i < 4000; i++) {
      const c = pickPowerOfTwo([...loads.keys()], (k) => loads.get(k) ?? 0, random) ?? ''
      loads.set(c, (loads.get(c) ?? 0) + 1)
    }
    const values = [...loads.values()]
    expect(Math.max(...values) - Math.min(...values)).toBeLessThanOrEqual(3)
  })

  it('draws two distinct candidates', () => {
    // random() = 0 twice would pick index 0 twice without the shift; the heavier index 0 must lose.
    const pick = pickPowerOfTwo(
      ['heavy', 'light', 'x'],
      (c) => (c === 'heavy' ? 9 : 0),
      () => 0,
    )
    expect(pick).toBe('light')
  })
})

describe('CircuitBreaker', () => {
  const opts = { threshold: 3, cooldownMs: 1000 }

  it('opens after threshold consecutive failures; a success resets the count', () => {
    const b = new CircuitBreaker(opts)
    b.onFailure(0)
    b.onFailure(0)
    b.onSuccess()
    b.onFailure(0)
    b.onFailure(0)
    expect(b.state(0)).toBe('closed')
    b.onFailure(10)
    expect(b.state(10)).toBe('open')
    expect(b.allows(500)).toBe(false)
  })

  it('after the cooldown lets exactly one trial through; its outcome closes or reopens', () => {
    const b = new CircuitBreaker(opts)
    for (let i = 0; i < 3; i++) b.onFailure(0)
    expect(b.state(1000)).toBe('half_open')
    expect(b.allows(1000)).toBe(true)
    b.onDispatch(1000)
    expect(b.allows(1001)).toBe(false)
    b.onFailure(1200)
    expect(b.state(1300)).toBe('open')
    expect(b.allows(2100)).toBe(false)
    expect(b.allows(2200)).toBe(true)
    b.onDispatch(2200)
    b.onSuccess()
    expect(b.state(2201)).toBe('closed')
    expect(b.consecutiveFailures).toBe(0)
  })

  it('a trial whose outcome never arrives is re-offered after another cooldown', () => {
    const b = new CircuitBreaker(opts)
    for (let i = 0; i < 3; i++) b.onFailure(0)
    b.onDispatch(1000)
    expect(b.allows(1500)).toBe(false)
    expect(b.allows(2000)).toBe(true)
  })
})

describe('token bucket', () => {
  const limits = { requestsPerSecond: 2, burst: 3 }

  it('serves the burst, refuses with the time to the next token, refills continuously', () => {
    let s = initialBucket(limits, 0)
    for (let i = 0; i < 3; i++) {
      const r = takeToken(s, limits, 0)
      expect(r.allowed).toBe(true)
      s = r.state
    }
    const refused = takeToken(s, limits, 0)
    expect(refused).toMatchObject({ allowed: false, reason: 'rate', retryAfterS: 1 })
    s = refused.state
    expect(takeToken(s, limits, 400).allowed).toBe(false)
    const later = takeToken(s, limits, 500)
    expect(later.allowed).toBe(true)
    // Never more than the burst, however long the idle time.
    const idle = takeToken(later.state, limits, 1_000_000)
    expect(idle.allowed && idle.remaining).toBe(2)
  })

  it('ignores a clock that steps back', () => {
    const s = takeToken(
      initialBucket({ requestsPerSecond: 1, burst: 1 }, 10_000),
      { requestsPerSecond: 1, burst: 1 },
      10_000,
    ).state
    expect(takeToken(s, { requestsPerSecond: 1, burst: 1 }, 0).allowed).toBe(false)
  })

  it('counts a daily quota per UTC day', () => {
    const q = { requestsPerSecond: 1000, burst: 1000, dailyQuota: 2 }
    const day = 86_400_000
    let s = initialBucket(q, 5 * day + 10)
    for (let i = 0; i < 2; i++) {
      const r = takeToken(s, q, 5 * day + 10)
      expect(r.allowed).toBe(true)
      s = r.state
    }
    const r = takeToken(s, q, 6 * day - 5000)
    expect(r).toMatchObject({ allowed: false, reason: 'quota', retryAfterS: 5 })
    expect(takeToken(r.state, q, 6 * day).allowed).toBe(true)
  })
})
