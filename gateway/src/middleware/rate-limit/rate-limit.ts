import { AppError } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../../env.ts'

export const RATE_LIMIT_REMAINING_HEADER = 'x-ratelimit-remaining'

/**
 * Takes a token from the caller's bucket (one RateLimiter object per key): the key's own limits, else the
 * gateway defaults; 429 RATE_LIMITED with Retry-After when empty or over the daily quota. Runs after apiKeyAuth.
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
    const decision = await c.env.RATE_LIMITER.getByName(principal.key_id).take(limits)
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
    await next()
    c.res.headers.set(RATE_LIMIT_REMAINING_HEADER, String(decision.remaining))
  })
}
