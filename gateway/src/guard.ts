/**
 * Who may call a route, written down once. Every route of the gateway declares one guard as its first handler:
 *
 *   guard({ access: 'public' })                 probes, API docs, the dashboard's static files
 *   guard({ access: 'runner' })                 runner → gateway membership calls, HMAC-signed (routing/)
 *   guard({ access: 'key', scope, countAs, rateLimit, modelParam? })
 *                                               everything else: an API key with `scope` (and the model)
 *
 * For key routes the chain always runs in this order: label the request for the counters (first, so that a
 * refused request is counted under its route too) → the client IP's pre-authentication limit (429) →
 * authenticate and authorize the key (401/403) → take a token from the key's bucket (429). Runner routes pass the
 * IP limit before their signature is checked. test/guard.workers.test.ts walks every route the app serves against a table of
 * the protection each is meant to have.
 * @module
 */
import type { ApiKeyScope } from '@twinserve/shared'
import { every } from 'hono/combine'
import { createMiddleware } from 'hono/factory'
import type { MiddlewareHandler } from 'hono/types'
import type { AppEnv } from './app-env.ts'
import { apiKeyAuth } from './auth/api-key-auth.ts'
import { countAs } from './http/request-log.ts'
import type { RouteLabel } from './http/request-log-entry.ts'
import { ipRateLimit } from './rate-limit/ip-rate-limit.ts'
import { rateLimit } from './rate-limit/rate-limit.ts'
import { runnerSignature } from './routing/runner-signature.ts'

export type GuardOptions =
  | { access: 'public' }
  | { access: 'runner' }
  | {
      access: 'key'
      /** The scope the API key needs (403 without it). */
      scope: ApiKeyScope
      /** The route's label in twinserve_gateway_requests_total (refusals included). */
      countAs: RouteLabel
      /** Whether the call spends a token of the key's bucket (429 when it is empty). */
      rateLimit: boolean
      /** The path parameter naming the model the key must cover (403 otherwise). */
      modelParam?: 'model'
    }

const declared = new WeakMap<MiddlewareHandler, GuardOptions>()

function chain(options: GuardOptions): MiddlewareHandler<AppEnv>[] {
  switch (options.access) {
    case 'public':
      return []
    case 'runner':
      return [ipRateLimit(), runnerSignature()]
    case 'key':
      return [
        countAs(options.countAs),
        ipRateLimit(),
        apiKeyAuth({ scope: options.scope, modelParam: options.modelParam }),
        ...(options.rateLimit ? [rateLimit()] : []),
      ]
  }
}

/**
 * The middleware that protects a route as `options` say.
 * @example new Hono<AppEnv>().get('/', guard({ access: 'key', scope: 'admin', countAs: 'admin', rateLimit: true }), handler)
 */
export function guard(options: GuardOptions): MiddlewareHandler<AppEnv> {
  const steps = chain(options)
  const run = steps.length > 0 ? every(...steps) : undefined
  const middleware = createMiddleware<AppEnv>(async function guard(c, next) {
    if (run) await run(c, next)
    else await next()
  })
  declared.set(middleware, options)
  return middleware
}

/** The options a handler was made with by guard(), or undefined when it is not a guard. */
export function guardOptions(handler: unknown): GuardOptions | undefined {
  return typeof handler === 'function' ? declared.get(handler as MiddlewareHandler) : undefined
}

/** The admin API (keys, experiments, runners): the admin scope, rate-limited, counted as `admin`. */
export const adminApi = () =>
  guard({ access: 'key', scope: 'admin', countAs: 'admin', rateLimit: true })
