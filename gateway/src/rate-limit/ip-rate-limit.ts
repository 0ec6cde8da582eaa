/**
 * The limit that applies before anyone is authenticated (issue #16, case 4: key-less requests met no limit at
 * all): every request to a key-guarded or runner route spends one unit of its client IP's allowance in
 * Cloudflare's Rate Limiting binding (PREAUTH_LIMITER, wrangler.toml: limit per 10 s window) before its key is
 * looked up or its signature checked. Over it: 429 RATE_LIMITED with Retry-After.
 *
 * The IP is Cloudflare's `cf-connecting-ip`, which the edge sets on every request and clients cannot forge. A
 * request without it (only possible off Cloudflare, e.g. a test calling the Worker directly) is not IP-limited.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'

export const CLIENT_IP_HEADER = 'cf-connecting-ip'
/** The binding's window (wrangler.toml `period`), the longest a refused client has to wait. */
const WINDOW_S = 10

export function ipRateLimit() {
  return createMiddleware<AppEnv>(async function ipRateLimit(c, next) {
    const ip = c.req.header(CLIENT_IP_HEADER)
    if (ip !== undefined && ip !== '') {
      const { success } = await c.env.PREAUTH_LIMITER.limit({ key: ip })
      if (!success) {
        c.get('requestLog')?.reject('ip_rate_limited')
        throw new AppError(
          'RATE_LIMITED',
          `too many requests from ${ip.slice(0, 64)}; retry after the window`,
          { retryAfter: WINDOW_S },
        )
      }
    }
    await next()
  })
}
