import { ALL_MODELS, type ApiKeyScope, AppError } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'
import { hex } from '../util/hex.ts'
import { looksLikeKey } from './api-key-secret.ts'
import { lookupKey } from './key-cache.ts'
import type { Principal } from './principal.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** Who is calling; set by apiKeyAuth on routes that need a key. */
    principal: Principal
  }
}

export interface ApiKeyAuthOptions {
  /** The scope the route needs. */
  scope: ApiKeyScope
  /** Name of the path parameter holding the model the key must cover (model routes). */
  modelParam?: string
}

const encoder = new TextEncoder()

/** The bootstrap secret's SHA-256, computed once per isolate (the secret changes only with a redeploy). */
let secretDigest: { secret: string; digest: ArrayBuffer } | undefined

/**
 * Constant-time comparison of a presented token (its digest) with the bootstrap secret: digests have equal
 * lengths whatever the inputs.
 */
async function isBootstrapSecret(tokenDigest: ArrayBuffer, secret: string | undefined) {
  if (!secret) return false
  if (secretDigest?.secret !== secret)
    secretDigest = { secret, digest: await crypto.subtle.digest('SHA-256', encoder.encode(secret)) }
  return crypto.subtle.timingSafeEqual(tokenDigest, secretDigest.digest)
}

const BOOTSTRAP: Principal = {
  key_id: 'bootstrap',
  tenant: 'bootstrap',
  scopes: ['admin'],
  models: [],
  rate_limit: null,
  daily_quota: null,
  tokens_per_minute: null,
}

/**
 * `Authorization: Bearer <key>`: 401 UNAUTHENTICATED when missing, unknown or revoked; 403 FORBIDDEN when the
 * key lacks the scope or (model routes) the model. The bootstrap secret (ADMIN_BOOTSTRAP_SECRET) authenticates
 * as an admin-only principal, so that the first keys can be created; it cannot run inference.
 */
export function apiKeyAuth(options: ApiKeyAuthOptions) {
  const { scope, modelParam } = options
  return createMiddleware<AppEnv>(async function apiKeyAuth(c, next) {
    const rl = c.get('requestLog')
    const deny = (code: 'UNAUTHENTICATED' | 'FORBIDDEN', reason: string, message: string) => {
      rl.reject(reason)
      return new AppError(code, message)
    }
    const header = c.req.header('authorization')
    if (!header)
      throw deny('UNAUTHENTICATED', 'missing_key', 'missing Authorization: Bearer <api key>')
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
    if (!match?.[1])
      throw deny('UNAUTHENTICATED', 'malformed_key', 'Authorization must be "Bearer <api key>"')
    const token = match[1]

    let principal: Principal
    // One digest serves both the bootstrap comparison and the key lookup (keys are stored as SHA-256 hex).
    const tokenDigest = await crypto.subtle.digest('SHA-256', encoder.encode(token))
    if (await isBootstrapSecret(tokenDigest, c.get('config').ADMIN_BOOTSTRAP_SECRET))
      principal = BOOTSTRAP
    else {
      const found = looksLikeKey(token)
        ? await lookupKey(
            c.env.DB,
            hex(new Uint8Array(tokenDigest)),
            c.get('config').AUTH_CACHE_TTL_MS,
          )
        : ({ found: false } as const)
      if (!found.found) throw deny('UNAUTHENTICATED', 'unknown_key', 'invalid API key')
      rl.tenant = found.principal.tenant
      rl.keyId = found.principal.key_id
      if (found.revoked) throw deny('UNAUTHENTICATED', 'revoked_key', 'API key has been revoked')
      principal = found.principal
    }
    rl.tenant = principal.tenant
    rl.keyId = principal.key_id

    if (!principal.scopes.includes(scope))
      throw deny('FORBIDDEN', 'scope', `API key lacks the '${scope}' scope`)
    if (modelParam !== undefined) {
      const model = c.req.param(modelParam) ?? ''
      if (!principal.models.includes(ALL_MODELS) && !principal.models.includes(model))
        throw deny('FORBIDDEN', 'model', `API key does not cover model '${model.slice(0, 128)}'`)
      rl.modelAuthorized = true
      rl.keyNamesModel = principal.models.includes(model)
    }
    c.set('principal', principal)
    await next()
  })
}
