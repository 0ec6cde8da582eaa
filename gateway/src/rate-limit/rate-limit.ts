import { AppError } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'
import type { RateDecision } from './rate-limiter.ts'
import { LEASE_TTL_MS, leaseSize, limitsKey, tokenLeases } from './token-lease.ts'

export const RATE_LIMIT_REMAINING_HEADER = 'x-ratelimit-remaining'

/**
 * Takes a token from the caller's bucket (one RateLimiter object per key): the key's own limits, else the
 * gateway defaults; 429 RATE_LIMITED with Retry-After when empty or over the daily quota. Runs after apiKeyAuth.
 * A token this isolate holds on lease is spent locally; otherwise the bucket is asked, for a lease when the
 * key's limits allow one (token-lease.ts).
 */
export function rateLimit() {
  return createMiddleware<AppEnv>(async function rateLimit(c, next) {
    const principal = c.get('principal')
    const config = c.get('config')
    const limits = {
      requestsPerSecond: principal.rate_limit?.requests_per_second ?? config.RATE_LIMIT_RPS,
      burst: principal.rate_limit?.burst ?? config.RATE_LIMIT_BURST,
      dailyQuota: principal.daily_quota ?? undefined,
    }
    const keyId = principal.key_id
    const lk = limitsKey(limits)
    let remaining = tokenLeases.take(keyId, lk, Date.now())
    if (remaining === undefined) {
      const size = leaseSize(limits)
      const refill = size > 1 && tokenLeases.beginRefill(keyId)
      const askedAt = Date.now()
      // Leases this isolate is done with ride along, so the bucket stops holding their tokens back.
      const finished = tokenLeases.takeFinished(keyId)
      let decision: RateDecision
      try {
        decision = await c.env.RATE_LIMITER.getByName(keyId).lease(
          limits,
          refill ? size : 1,
          LEASE_TTL_MS,
          finished,
        )
      } catch (err) {
        tokenLeases.restoreFinished(keyId, finished)
        throw err
      } finally {
        if (refill) tokenLeases.endRefill(keyId)
      }
      if (!decision.allowed) {
        c.get('requestLog').reject(decision.reason === 'quota' ? 'quota' : 'rate_limited')
        throw new AppError(
          'RATE_LIMITED',
          decision.reason === 'quota'
            ? `daily quota of ${limits.dailyQuota} requests used up`
            : `rate limit of ${limits.requestsPerSecond} requests/s (burst ${limits.burst}) exceeded`,
          { retryAfter: decision.retry_after_s },
        )
      }
      if (decision.lease_id !== undefined && decision.granted > 1)
        tokenLeases.add(
          keyId,
          lk,
          decision.lease_id,
          decision.granted - 1,
          decision.remaining,
          askedAt,
        )
      remaining = decision.remaining + tokenLeases.held(keyId, lk, Date.now())
    }
    await next()
    c.res.headers.set(RATE_LIMIT_REMAINING_HEADER, String(remaining))
  })
}
