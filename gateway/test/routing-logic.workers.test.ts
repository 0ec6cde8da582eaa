import { describe, expect, it } from 'vitest'
import { MetricsBuffer } from '../src/metrics/metrics-buffer.ts'
import { initialBucket, takeToken } from '../src/rate-limit/token-bucket.ts'
import { CircuitBreaker } from '../src/routing/circuit-breaker.ts'
import { pickPowerOfTwo } from '../src/routing/power-of-two.ts'
import type { RunnerRecord } from '../src/routing/registry-snapshot.ts'
import { RunnerPool, routingSnapshot } from '../src/routing/runner-pool.ts'
import { REFRESH_GRACE_MS, TtlCache } from '../src/util/ttl-cache.ts'

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

describe('RunnerPool (per-isolate routing state)', () => {
  const record = (id: string, over: Partial<RunnerRecord> = {}): RunnerRecord => ({
    runner_id: id,
    url: `http://${id}`,
    provider: 'cpu',
    models: [{ name: 'm', variants: ['shared'], experts: [], ready: true }],
    load: { queue_depth: 0, in_flight: 0, capacity: 10 },
    draining: false,
    group: 'default',
    registered_at: 0,
    last_seen: 1_000_000,
    ...over,
  })
  const snap = (runners: RunnerRecord[]) => ({ runners, heartbeat_interval_ms: 1000, catalog: [] })
  const make = () =>
    new RunnerPool({ cacheMs: 500, breakerThreshold: 2, breakerCooldownMs: 1000, random: rng(3) })

  it('serves a snapshot while fresh, then asks again', () => {
    const pool = make()
    expect(pool.fresh(0)).toBeUndefined()
    pool.adopt(snap([record('a')]), 1000)
    expect(pool.fresh(1500)?.runners).toHaveLength(1)
    expect(pool.fresh(1501)).toBeUndefined()
    pool.adopt(snap([]), 2000)
    pool.invalidate()
    expect(pool.fresh(2000)).toBeUndefined()
  })

  it('holders: live (3 heartbeat intervals), not draining, model ready', () => {
    const pool = make()
    const s = snap([
      record('live'),
      record('stale', { last_seen: 1_000_000 - 3001 }),
      record('draining', { draining: true }),
      record('loading', { models: [{ name: 'm', variants: [], experts: [], ready: false }] }),
      record('other', { models: [{ name: 'x', variants: [], experts: [], ready: true }] }),
    ])
    expect(pool.holders(s, 'm', 1_000_000).map((r) => r.runner_id)).toEqual(['live'])
  })

  it('picks by load, skips tried runners, prefers the variant, and honours its breakers', () => {
    const pool = make()
    const busy = record('busy', { load: { queue_depth: 8, in_flight: 2, capacity: 10 } })
    const idle = record('idle')
    const ties = record('ties', {
      models: [{ name: 'm', variants: ['shared', 'ties'], experts: [], ready: true }],
      load: { queue_depth: 9, in_flight: 1, capacity: 10 },
    })
    expect(pool.pick([busy, idle], 'm', undefined, [], 0)?.runner_id).toBe('idle')
    expect(pool.pick([busy, idle], 'm', undefined, ['idle'], 0)?.runner_id).toBe('busy')
    expect(pool.pick([busy, idle, ties], 'm', 'ties', [], 0)?.runner_id).toBe('ties')
    // Our own in-flight count outweighs a stale report of an idle runner.
    for (let i = 0; i < 12; i++) pool.dispatch('idle', 0)
    expect(pool.pick([busy, idle], 'm', undefined, [], 0)?.runner_id).toBe('busy')
    for (let i = 0; i < 12; i++) pool.settle('idle', 'ok', 0)
    expect(pool.view('idle', 0).outstanding).toBe(0)

    pool.dispatch('idle', 0)
    expect(pool.settle('idle', 'server_error', 0)).toBe(false)
    pool.dispatch('idle', 0)
    expect(pool.settle('idle', 'timeout', 0)).toBe(true)
    expect(pool.view('idle', 10)).toEqual({
      breaker: 'open',
      consecutive_failures: 2,
      outstanding: 0,
    })
    expect(pool.pick([busy, idle], 'm', undefined, [], 10)?.runner_id).toBe('busy')
    // 4xx verdicts and overload are not the runner failing.
    pool.dispatch('busy', 0)
    pool.settle('busy', 'client_error', 0)
    pool.dispatch('busy', 0)
    pool.settle('busy', 'overloaded', 0)
    expect(pool.view('busy', 0).breaker).toBe('closed')
  })

  it('passes over a suspect (an attempt overdue) until it answers or the suspicion ends (#16)', () => {
    const pool = make()
    const frozen = record('frozen')
    const busy = record('busy', { load: { queue_depth: 8, in_flight: 2, capacity: 10 } })
    pool.answered('frozen', 100)
    pool.answered('busy', 200)
    // The idler runner, until one of its attempts is overdue (its own budget ends at 5,000).
    expect(pool.pick([frozen, busy], 'm', undefined, [], 300)?.runner_id).toBe('frozen')
    pool.overdue('frozen', 5000)
    expect(pool.suspectFor('frozen', 300)).toBe(4700)
    expect(pool.pick([frozen, busy], 'm', undefined, [], 300)?.runner_id).toBe('busy')
    // With every runner a suspect, a request goes to the one that answered last…
    pool.overdue('busy', 5000)
    expect(pool.pick([frozen, busy], 'm', undefined, [], 400)?.runner_id).toBe('busy')
    // …and a hedge or retry of an attempt there to a suspect rather than none.
    expect(pool.pick([frozen, busy], 'm', undefined, ['busy'], 400)?.runner_id).toBe('frozen')
    // Any answer (a late one too) clears a suspicion; a suspicion ends with the overdue attempt's budget.
    pool.answered('busy', 500)
    expect(pool.suspectFor('busy', 500)).toBe(0)
    expect(pool.pick([frozen, busy], 'm', undefined, [], 4999)?.runner_id).toBe('busy')
    expect(pool.pick([frozen, busy], 'm', undefined, [], 5000)?.runner_id).toBe('frozen')
    // Runners that left are forgotten.
    pool.overdue('frozen', 9000)
    pool.adopt(snap([busy]), 5000)
    expect(pool.suspectFor('frozen', 5000)).toBe(0)
  })

  it('a connection failure drops the cached snapshot (the runner may have left)', () => {
    const pool = make()
    pool.adopt(snap([record('a')]), 0)
    pool.dispatch('a', 0)
    pool.settle('a', 'connect_error', 0)
    expect(pool.fresh(0)).toBeUndefined()
  })
})

describe('MetricsBuffer', () => {
  it('sums counters and histograms per label set until drained', () => {
    const b = new MetricsBuffer()
    expect(b.empty).toBe(true)
    b.inc('twinserve_gateway_retries_total', { model: 'm' })
    b.inc('twinserve_gateway_retries_total', { model: 'm' }, 2)
    b.inc('twinserve_gateway_retries_total', { model: 'n' })
    b.observe('twinserve_gateway_cold_start_wait_ms', { model: 'm' }, 3)
    b.observe('twinserve_gateway_cold_start_wait_ms', { model: 'm' }, 4)
    b.observe('twinserve_gateway_cold_start_wait_ms', { model: 'm' }, 1e9)
    const batch = b.drain()
    expect(b.empty).toBe(true)
    expect(batch.counters).toEqual([
      { name: 'twinserve_gateway_retries_total', key: '["m"]', by: 3 },
      { name: 'twinserve_gateway_retries_total', key: '["n"]', by: 1 },
    ])
    const [h] = batch.histograms
    expect(h?.count).toBe(3)
    expect(h?.sum).toBe(1e9 + 7)
    // 3 and 4 fall in the (2.5, 5] bucket; 1e9 is above every bound (only in count).
    expect(h?.buckets.reduce((a, c) => a + c, 0)).toBe(2)
    expect(h?.buckets[2]).toBe(2)
  })
})

describe('TtlCache', () => {
  it('expires entries and evicts the oldest beyond its size', () => {
    const c = new TtlCache<number>(2)
    c.set('a', 1, 100)
    expect(c.get('a', 99)).toBe(1)
    expect(c.get('a', 100)).toBeUndefined()
    c.set('a', 1, 1000)
    c.set('b', 2, 1000)
    c.set('c', 3, 1000)
    expect(c.get('a', 0)).toBeUndefined()
    expect(c.get('c', 0)).toBe(3)
  })

  // Issue #17: at c = 32 an expired entry used to send every concurrent request to D1 at once.
  it('lets one caller refresh an expired entry while the others keep the old value, within the grace', () => {
    const c = new TtlCache<number>(4)
    c.set('k', 1, 100)
    expect(c.getOrClaim('k', 50)).toBe(1)
    expect(c.getOrClaim('k', 100)).toBeUndefined() // expired: this caller refreshes
    expect(c.getOrClaim('k', 101)).toBe(1) // another, meanwhile: the old value
    expect(c.get('k', 101)).toBeUndefined() // a plain get never serves an expired value
    expect(c.getOrClaim('k', 100 + REFRESH_GRACE_MS)).toBeUndefined() // that refresh hung: refresh again
    c.set('k', 2, 5000)
    c.refreshed('k')
    expect(c.getOrClaim('k', 2000)).toBe(2)
    c.delete('k')
    expect(c.getOrClaim('k', 2000)).toBeUndefined()
  })
})

describe('routingSnapshot', () => {
  const snapshot = (n: number) => ({ runners: [], heartbeat_interval_ms: n, catalog: [] })

  it('fetches once for concurrent requests on a stale snapshot; the others route on the stale one', async () => {
    const pool = new RunnerPool({ cacheMs: 0, breakerThreshold: 2, breakerCooldownMs: 1000 })
    pool.adopt(snapshot(1), Date.now() - 10)
    const pending: ((s: ReturnType<typeof snapshot>) => void)[] = []
    const fetchSnapshot = () =>
      new Promise<ReturnType<typeof snapshot>>((resolve) => {
        pending.push(resolve)
      })
    const first = routingSnapshot(pool, fetchSnapshot)
    const others = await Promise.all([1, 2, 3].map(() => routingSnapshot(pool, fetchSnapshot)))
    expect(pending).toHaveLength(1)
    expect(others.map((s) => s.heartbeat_interval_ms)).toEqual([1, 1, 1])
    pending[0]?.(snapshot(2))
    expect((await first).heartbeat_interval_ms).toBe(2)
    // Invalidated (a membership call, a connection failure): nothing stale to route on, every request fetches.
    pool.invalidate()
    const both = Promise.all([
      routingSnapshot(pool, fetchSnapshot),
      routingSnapshot(pool, fetchSnapshot),
    ])
    expect(pending).toHaveLength(3)
    for (const resolve of pending.slice(1)) resolve(snapshot(3))
    expect((await both).map((s) => s.heartbeat_interval_ms)).toEqual([3, 3])
  })
})
