/**
 * What every proxied call to a runner carries from the request context (the RouteInput fields that do not
 * depend on the route): bindings, config, signing secret, request id and log, model, tenant, deadline, the
 * client's abort signal and the execution context's waitUntil.
 * @module
 */
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { signingSecret } from '../config.ts'

export function routeBase(c: Context<AppEnv>, model: string, deadlineMs: number) {
  const config = c.get('config')
  return {
    env: c.env,
    config,
    secret: signingSecret(config),
    requestId: c.get('requestId'),
    requestLog: c.get('requestLog'),
    model,
    tenant: c.get('principal').tenant,
    deadlineMs,
    clientSignal: c.req.raw.signal,
    waitUntil: waitUntilOf(c),
  }
}

/** The execution context's waitUntil, or undefined where there is none (a direct app.request in a unit test). */
export function waitUntilOf(c: Context<AppEnv>): ((work: Promise<unknown>) => void) | undefined {
  try {
    const ctx = c.executionCtx
    return (work) => ctx.waitUntil(work)
  } catch {
    return undefined
  }
}
