import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../../env.ts'

export const REQUEST_ID_HEADER = 'x-request-id'

/** Client ids are echoed only when tame (they end up in logs and headers); otherwise we mint a UUID. */
const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * Gives every request an id (the caller's `x-request-id` if it is safe, else a UUID), exposes it as
 * `c.get('requestId')` and returns it in the `x-request-id` response header, errors included.
 */
export function requestId() {
  return createMiddleware<AppEnv>(async function requestId(c, next) {
    const given = c.req.header(REQUEST_ID_HEADER)
    const id = given && SAFE_ID.test(given) ? given : crypto.randomUUID()
    c.set('requestId', id)
    await next()
    c.res.headers.set(REQUEST_ID_HEADER, id)
  })
}
