import { beforeAll, describe, expect, it } from 'vitest'
import { bearer, createKey, expectError, gw, migrate } from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

beforeAll(migrate)

/** Passes auth and the limiter without a runner: 503 {ready:false} is an allowed request. */
const call = (key: string) => gw('/v2/models/rl-model/ready', { headers: bearer(key) })

describe('per-key rate limits (RateLimiter Durable Object)', () => {
  it('serves the burst, then 429 RATE_LIMITED with Retry-After; other keys are unaffected', async () => {
    const limited = await createKey({
      tenant: 'rl',
      scopes: ['infer'],
      models: ['*'],
      rate_limit: { requests_per_second: 0.5, burst: 3 },
    })
    const other = await createKey({ tenant: 'rl', scopes: ['infer'], models: ['*'] })
    const remaining: string[] = []
    for (let i = 0; i < 3; i++) {
      const res = await call(limited.key)
      expect(res.status).toBe(503)
      remaining.push(res.headers.get('x-ratelimit-remaining') ?? '')
    }
    expect(remaining).toEqual(['2', '1', '0'])
    const res = await call(limited.key)
    const body = await expectError(res, 429, 'RATE_LIMITED')
    expect(body.error).toMatch(/0\.5 requests\/s \(burst 3\)/)
    // One token at 0.5/s takes 2 s.
    expect(Number(res.headers.get('retry-after'))).toBe(2)
    expect((await call(other.key)).status).toBe(503)
  })

  it('refills over time', async () => {
    const key = await createKey({
      tenant: 'rl',
      scopes: ['infer'],
      models: ['*'],
      rate_limit: { requests_per_second: 2, burst: 1 },
    })
    expect((await call(key.key)).status).toBe(503)
    await expectError(await call(key.key), 429, 'RATE_LIMITED')
    // One token every 500 ms.
    await new Promise((r) => setTimeout(r, 600))
    expect((await call(key.key)).status).toBe(503)
  })

  it('enforces a daily quota with Retry-After until the next UTC day', async () => {
    const key = await createKey({ tenant: 'rl', scopes: ['infer'], models: ['*'], daily_quota: 2 })
    expect((await call(key.key)).status).toBe(503)
    expect((await call(key.key)).status).toBe(503)
    const res = await call(key.key)
    const body = await expectError(res, 429, 'RATE_LIMITED')
    expect(body.error).toMatch(/daily quota of 2/)
    const now = Date.now()
    const untilMidnight = Math.ceil((Math.ceil(now / 86_400_000) * 86_400_000 - now) / 1000)
    expect(Math.abs(Number(res.headers.get('retry-after')) - untilMidnight)).toBeLessThanOrEqual(2)
  })

  it('rejected requests are counted per tenant in /metrics', async () => {
    const key = await createKey({
      tenant: 'rl-count',
      scopes: ['infer'],
      models: ['*'],
      rate_limit: { requests_per_second: 0.1, burst: 1 },
    })
    await call(key.key)
    await expectError(await call(key.key), 429, 'RATE_LIMITED')
    let text = ''
    for (let i = 0; i < 50 && !text.includes('tenant="rl-count"'); i++) {
      text = await (await gw('/metrics', { headers: bearer(TEST_ADMIN_SECRET) })).text()
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(text).toMatch(
      /twinserve_gateway_rejections_total\{reason="rate_limited",tenant="rl-count"\} 1/,
    )
  })
})
