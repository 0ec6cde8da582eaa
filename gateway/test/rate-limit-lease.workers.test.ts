import { env, runInDurableObject } from 'cloudflare:test'
import { beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest'
import {
  type BucketLimits,
  type BucketState,
  initialBucket,
  takeToken,
  takeTokens,
} from '../src/rate-limit/token-bucket.ts'
import {
  LEASE_TTL_MS,
  leaseSize,
  limitsKey,
  MAX_LEASE,
  TokenLeases,
} from '../src/rate-limit/token-lease.ts'
import { bearer, createKey, gw, migrate } from './helpers.ts'

beforeAll(migrate)

describe('token bucket leases (pure)', () => {
  const limits = { requestsPerSecond: 10, burst: 20 }

  it('grants up to the tokens there are; the extra tokens are a lease that holds back the refill', () => {
    const fast = { ...limits, requestsPerSecond: 1e6 }
    const first = takeTokens(initialBucket(limits, 0), limits, 0, 8, 500)
    expect(first).toMatchObject({ allowed: true, granted: 8, leaseId: 1, remaining: 12 })
    expect(first.state.leases).toEqual([{ id: 1, tokens: 7, expiresMs: 500 }])
    // Refill stops at burst − leased while the lease is outstanding…
    const capped = takeToken(first.state, fast, 400)
    expect(capped.allowed && capped.remaining).toBe(20 - 7 - 1)
    // …up to the full burst once it lapsed (its tokens are gone)…
    const lapsed = takeToken(first.state, fast, 600)
    expect(lapsed.allowed && lapsed.remaining).toBe(19)
    expect(lapsed.state.leases).toBeUndefined()
    // …or once its holder reports it finished, with the tokens it did not use given back.
    const reported = takeTokens(first.state, limits, 100, 1, 500, [{ id: 1, unused: 3 }])
    expect(reported.allowed && reported.remaining).toBe(12 + 1 + 3 - 1)
    expect(reported.state.leases).toBeUndefined()
    // A report never returns more than the lease held, and an unknown id returns nothing.
    const greedy = takeTokens(first.state, fast, 1, 1, 500, [
      { id: 1, unused: 99 },
      { id: 7, unused: 5 },
    ])
    expect(greedy.allowed && greedy.remaining).toBe(20 - 1)
  })

  it('never grants more than the bucket holds or the quota leaves; one token makes no lease', () => {
    const s: BucketState = { ...initialBucket(limits, 0), tokens: 3.5 }
    expect(takeTokens(s, limits, 0, 10, 500)).toMatchObject({ granted: 3, remaining: 0 })
    const q = { ...limits, dailyQuota: 5 }
    const quota = takeTokens({ ...initialBucket(q, 0), dayCount: 3 }, q, 0, 10, 500)
    expect(quota).toMatchObject({ allowed: true, granted: 2 })
    const single = takeTokens(initialBucket(limits, 0), limits, 0, 1, 500)
    expect(single.state.leases).toBeUndefined()
  })

  it('refuses until leases lapse when they hold more than a lowered burst', () => {
    const before = { requestsPerSecond: 1000, burst: 40 }
    const leased = takeTokens(initialBucket(before, 0), before, 0, 10, 2500)
    expect(leased).toMatchObject({ allowed: true, granted: 10 })
    // The key's burst is lowered to 4 while 9 tokens are out on lease: nothing until the lease lapses.
    const after = { requestsPerSecond: 1000, burst: 4 }
    expect(takeToken(leased.state, after, 1000)).toMatchObject({
      allowed: false,
      reason: 'rate',
      retryAfterS: 2,
    })
    expect(takeToken(leased.state, after, 2600).allowed).toBe(true)
  })

  it('sizes leases to a slice of rate and burst; quota keys take single tokens', () => {
    expect(leaseSize({ requestsPerSecond: 0.5, burst: 3 })).toBe(1)
    expect(leaseSize({ requestsPerSecond: 50, burst: 100 })).toBe(5)
    expect(leaseSize({ requestsPerSecond: 1000, burst: 80 })).toBe(10)
    expect(leaseSize({ requestsPerSecond: 1e6, burst: 1e6 })).toBe(MAX_LEASE)
    expect(leaseSize({ requestsPerSecond: 1e6, burst: 1e6, dailyQuota: 1e6 })).toBe(1)
  })

  it('an isolate spends a lease until it is empty, lapses or the limits change, and reports each one', () => {
    const book = new TokenLeases()
    const lk = limitsKey(limits)
    expect(book.take('k', lk, 0)).toBeUndefined()
    book.add('k', lk, 1, 2, 10, 0)
    expect(book.take('k', lk, 1)).toBe(11)
    expect(book.take('k', lk, 2)).toBe(10)
    expect(book.take('k', lk, 3)).toBeUndefined()
    book.add('k', lk, 2, 5, 10, 100)
    expect(book.take('k', lk, 101)).toBe(14)
    expect(book.take('k', lk, 100 + LEASE_TTL_MS)).toBeUndefined()
    book.add('k', lk, 3, 5, 10, 1000)
    expect(book.take('k', limitsKey({ ...limits, burst: 21 }), 1001)).toBeUndefined()
    expect(book.held('k', lk, 1001)).toBe(0)
    // Spent, lapsed with 4 unused, dropped on a change of limits with 5 unused: reported once.
    expect(book.takeFinished('k')).toEqual([
      { id: 1, unused: 0 },
      { id: 2, unused: 4 },
      { id: 3, unused: 5 },
    ])
    expect(book.takeFinished('k')).toEqual([])
    book.restoreFinished('k', [{ id: 3, unused: 5 }])
    expect(book.takeFinished('k')).toEqual([{ id: 3, unused: 5 }])
    expect(book.beginRefill('k')).toBe(true)
    expect(book.beginRefill('k')).toBe(false)
    expect(book.beginRefill('other')).toBe(true)
    book.endRefill('k')
    expect(book.beginRefill('k')).toBe(true)
  })

  it('several isolates leasing from one bucket never admit more than the bucket allows in any window', () => {
    // A seeded stream of requests spread over 3 isolates, far above the limit, replayed twice: with leases
    // and with one bucket call per request (the exact reference).
    const lim: BucketLimits = { requestsPerSecond: 200, burst: 40 }
    let seed = 12345
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed / 2147483648
    }
    const arrivals: { t: number; isolate: number }[] = []
    // 1.5 s at ~80% of the limit (mean gap 6.25 ms), then 1.5 s at ~7× (mean gap 0.75 ms).
    for (let t = 0; t < 3000; t += t < 1500 ? rand() * 12.5 : rand() * 1.5)
      arrivals.push({ t, isolate: Math.floor(rand() * 3) })
    const calm = arrivals.filter((r) => r.t < 1500).length

    const run = (leasing: boolean) => {
      let bucket = initialBucket(lim, 0)
      const books = [new TokenLeases(), new TokenLeases(), new TokenLeases()]
      const lk = limitsKey(lim)
      const admitted: number[] = []
      let calls = 0
      const grants: number[] = []
      for (const { t, isolate } of arrivals) {
        const book = books[isolate] as TokenLeases
        if (leasing && book.take('k', lk, t) !== undefined) {
          admitted.push(t)
          continue
        }
        calls++
        const r = takeTokens(
          bucket,
          lim,
          t,
          leasing ? leaseSize(lim) : 1,
          LEASE_TTL_MS,
          book.takeFinished('k'),
        )
        bucket = r.state
        if (!r.allowed) continue
        grants.push(t)
        admitted.push(t)
        if (r.leaseId !== undefined) book.add('k', lk, r.leaseId, r.granted - 1, r.remaining, t)
      }
      return { admitted, calls, grants }
    }
    const leased = run(true)
    const exact = run(false)
    // The token-bucket bound, for every window between two admissions.
    const a = leased.admitted
    for (let i = 0; i < a.length; i++)
      for (let j = i; j < a.length; j++) {
        const allowed = lim.burst + (lim.requestsPerSecond * ((a[j] ?? 0) - (a[i] ?? 0))) / 1000
        if (j - i + 1 > allowed + 1e-9)
          throw new Error(
            `${j - i + 1} admitted in [${a[i]}, ${a[j]}] ms, bucket allows ${allowed}`,
          )
      }
    expect(a.length).toBeLessThanOrEqual(exact.admitted.length)
    // Below the limit, leases admit everything the exact bucket admits with a fraction of its calls…
    const before = (ts: number[]) => ts.filter((t) => t < 1500).length
    expect(before(exact.admitted)).toBe(calm)
    expect(before(a)).toBe(calm)
    expect(before(leased.grants)).toBeLessThan(calm / 3)
    // …and far above it they cost little throughput (a refusal always asks the bucket: nothing is leased).
    expect(a.length).toBeGreaterThan(exact.admitted.length * 0.9)
  })
})

describe('leases through the gateway', () => {
  const call = (key: string) => gw('/v2/models/lease-model/ready', { headers: bearer(key) })
  const bucketOf = (keyId: string) =>
    runInDurableObject(env.RATE_LIMITER.getByName(keyId), (_instance, state) =>
      state.storage.kv.get<BucketState>('bucket'),
    )

  it('a lease serves the next requests without calling the key object; remaining counts down exactly', async () => {
    // The test bindings' default limits (1000/s, burst 1000): leases of MAX_LEASE tokens.
    const key = await createKey({ tenant: 'lease', scopes: ['infer'], models: ['*'] })
    // The lease lives LEASE_TTL_MS (500 ms) of wall time, which 32 calls on a loaded CI machine can outlast: the
    // clock (Date, shared by the gateway, its objects and this test in one isolate) stands still while the lease
    // is spent, and moves on only for the last call. Still failing if any of those calls asks the object.
    const t0 = Date.now()
    vi.useFakeTimers({ toFake: ['Date'], now: t0 })
    onTestFinished(() => {
      vi.useRealTimers()
    })
    const first = await call(key.key)
    expect(first.status).toBe(503)
    expect(first.headers.get('x-ratelimit-remaining')).toBe(String(1000 - 1))
    const after = await bucketOf(key.id)
    expect(after?.leases).toEqual([
      { id: expect.any(Number), tokens: MAX_LEASE - 1, expiresMs: expect.any(Number) },
    ])
    expect(after?.tokens).toBe(1000 - MAX_LEASE)
    const remaining: string[] = []
    for (let i = 0; i < MAX_LEASE - 1; i++)
      remaining.push((await call(key.key)).headers.get('x-ratelimit-remaining') ?? '')
    expect(remaining).toEqual(Array.from({ length: MAX_LEASE - 1 }, (_, i) => String(998 - i)))
    // Untouched: those requests spent the lease. The next one asks the object again.
    expect(await bucketOf(key.id)).toEqual(after)
    vi.setSystemTime(t0 + 1)
    await call(key.key)
    expect((await bucketOf(key.id))?.updatedMs).toBeGreaterThan(after?.updatedMs ?? 0)
  })

  it('keys with a daily quota take one token per request (the quota stays exact)', async () => {
    const key = await createKey({
      tenant: 'lease',
      scopes: ['infer'],
      models: ['*'],
      daily_quota: 1000,
    })
    await call(key.key)
    await call(key.key)
    const b = await bucketOf(key.id)
    expect(b?.leases).toBeUndefined()
    expect(b?.dayCount).toBe(2)
  })
})
