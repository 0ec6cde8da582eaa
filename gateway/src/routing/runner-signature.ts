import { AppError, verifyRequest } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'
import { signingSecret } from '../config.ts'
import { readJsonText } from '../http/json-body.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** The verified body of a signed runner → gateway call. */
    signedBody: string
  }
}

/** Membership bodies are small; anything bigger is not a runner talking. */
const MAX_REGISTRY_BODY_BYTES = 256 * 1024

/**
 * Runner → gateway calls must carry a valid HMAC (shared/src/signing.ts) over method, path, timestamp and the
 * exact body, made with RUNNER_SIGNING_SECRET; 401 otherwise. The verified body text is `c.get('signedBody')`.
 * The signature is checked before the body is parsed, so an unsigned caller learns nothing about the schema.
 */
export function runnerSignature() {
  return createMiddleware<AppEnv>(async function runnerSignature(c, next) {
    const secret = signingSecret(c.get('config'))
    const body = await readJsonText(c, MAX_REGISTRY_BODY_BYTES)
    const url = new URL(c.req.url)
    const verdict = await verifyRequest(secret, {
      method: c.req.method,
      path: url.pathname + url.search,
      body,
      headers: c.req.raw.headers,
    })
    if (!verdict.ok) {
      c.get('requestLog').reject('bad_signature')
      throw new AppError('UNAUTHENTICATED', `runner signature rejected: ${verdict.reason}`)
    }
    c.set('signedBody', body)
    await next()
  })
}
