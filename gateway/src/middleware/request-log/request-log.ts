import type { ErrorCode } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import { loadConfig } from '../../config.ts'
import type { AttemptReport, RequestReport } from '../../durable-objects/runner-registry.ts'
import type { AppEnv } from '../../env.ts'
import { errorFields, log } from '../../lib/log.ts'
import { registryStub } from '../../lib/registry-stub.ts'

/** What a request did, filled in by the middleware and handlers it passes through. */
export class RequestLog {
  /** Metric label for the route; requests without one (health, docs, runner calls) are logged, not counted. */
  route: string | undefined
  model = ''
  tenant = ''
  keyId: string | undefined
  runnerId: string | undefined
  attempts = 0
  errorCode: ErrorCode | undefined
  /** An attempt whose outcome the registry has not heard yet. */
  pendingAttempt: AttemptReport | undefined
  coldStart: RequestReport['cold_start']
  rejection: string | undefined

  setError(code: ErrorCode): void {
    this.errorCode = code
  }

  reject(reason: string): void {
    this.rejection = reason
  }
}

/**
 * One structured log line per request (request id, route, model, tenant, runner, attempts, status, duration,
 * cold-start wait) and, for counted routes, one report to the registry's counters after the response is sent.
 */
export function requestLogger() {
  return createMiddleware<AppEnv>(async function requestLogger(c, next) {
    const started = Date.now()
    const rl = new RequestLog()
    c.set('requestLog', rl)
    // Parsing the config here makes a misconfigured gateway fail every request loudly, health included.
    c.set('config', loadConfig(c.env))
    await next()
    const durationMs = Date.now() - started
    const status = c.res.status
    log(status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info', 'request', {
      request_id: c.get('requestId'),
      method: c.req.method,
      path: c.req.path,
      status,
      duration_ms: durationMs,
      route: rl.route,
      model: rl.model || undefined,
      tenant: rl.tenant || undefined,
      key_id: rl.keyId,
      runner_id: rl.runnerId,
      attempts: rl.attempts || undefined,
      cold_start_wait_ms: rl.coldStart?.waited_ms,
      cold_start_result: rl.coldStart?.result,
      error_code: rl.errorCode,
      rejection: rl.rejection,
    })
    if (rl.route === undefined && rl.rejection === undefined && rl.pendingAttempt === undefined)
      return
    const report: RequestReport = {
      route: rl.route ?? 'other',
      model: rl.model,
      status,
      duration_ms: durationMs,
      attempt: rl.pendingAttempt,
      retries: Math.max(0, rl.attempts - 1),
      cold_start: rl.coldStart,
      rejection: rl.rejection ? { reason: rl.rejection, tenant: rl.tenant } : undefined,
    }
    const send = registryStub(c.env)
      .finish(report)
      .catch((err: unknown) =>
        log('error', 'metrics_report_failed', {
          request_id: c.get('requestId'),
          ...errorFields(err),
        }),
      )
    try {
      c.executionCtx.waitUntil(send)
    } catch {
      // No execution context (a direct app.request in a unit test): finish inline instead.
      await send
    }
  })
}

/** Labels the request for the counters (route, and the `:model` parameter when there is one). */
export function countAs(route: string) {
  return createMiddleware<AppEnv>(async function countAs(c, next) {
    const rl = c.get('requestLog')
    rl.route = route
    rl.model = c.req.param('model') ?? ''
    await next()
  })
}
