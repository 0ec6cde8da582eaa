/**
 * Gives every request an id (the caller's `x-request-id` if it is safe, else a UUID: shared/src/http.ts),
 * exposes it as `c.get('requestId')` and returns it in the `x-request-id` response header, errors included.
 * @module
 */
import { REQUEST_ID_HEADER, requestIdFrom } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** The request's id (x-request-id): in every log line, error body and runner call. */
    requestId: string
  }
}

export function requestId() {
  return createMiddleware<AppEnv>(async function requestId(c, next) {
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER))
    c.set('requestId', id)
    await next()
    c.res.headers.set(REQUEST_ID_HEADER, id)
  })
}
