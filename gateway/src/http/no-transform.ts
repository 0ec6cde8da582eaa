/**
 * `Cache-Control: no-transform` on every answer, so nothing between the gateway and the client compresses it.
 * The V2 clients advertise encodings they cannot read: tritonclient's aio client sends `Accept-Encoding: gzip,
 * deflate` (newer aiohttp adds `br`) on every call but decodes only infer answers, and a gzip metadata answer
 * makes it raise UnicodeDecodeError (test/fixtures/v2-clients/README.md, "Response contract"). Cloudflare's edge
 * compresses by Accept-Encoding unless the answer says no-transform, and so does `wrangler dev`'s proxy. Answers
 * here are small JSON or raw tensors, which gain little from compression anyway; identity is always acceptable.
 * @module
 */
import type { MiddlewareHandler } from 'hono'
import type { AppEnv } from '../app-env.ts'

export function noTransform(): MiddlewareHandler<AppEnv> {
  return async function noTransform(c, next) {
    await next()
    const current = c.res.headers.get('cache-control')
    const value =
      current && /no-transform/i.test(current)
        ? current
        : current
          ? `${current}, no-transform`
          : 'no-transform'
    const mark = (h: Headers) => {
      h.set('cache-control', value)
      // workerd (and wrangler dev's proxy in front of it) compresses an answer that names no coding when the
      // client accepts gzip; naming `identity` keeps it as it is (the clients ignore this coding name).
      if (!h.has('content-encoding')) h.set('content-encoding', 'identity')
    }
    try {
      mark(c.res.headers)
    } catch {
      // A response passed through from a fetch has immutable headers: copy it first.
      c.res = new Response(c.res.body, c.res)
      mark(c.res.headers)
    }
  }
}
