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
    if (current && /no-transform/i.test(current)) return
    const value = current ? `${current}, no-transform` : 'no-transform'
    try {
      c.res.headers.set('cache-control', value)
    } catch {
      // A response passed through from a fetch has immutable headers: copy it first.
      c.res = new Response(c.res.body, c.res)
      c.res.headers.set('cache-control', value)
    }
  }
}
