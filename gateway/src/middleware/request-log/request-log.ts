import type { ErrorCode } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import { loadConfig } from '../../config.ts'
import type { AppEnv } from '../../env.ts'
import { log, setLogLevel } from '../../lib/log.ts'
import { metrics, scheduleMetricsFlush } from '../../lib/metrics-flush.ts'

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
  coldStart: { waited_ms: number; result: 'served' | 'timed_out' } | undefined
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
 * cold-start wait), and the request's counters into the isolate's metrics buffer.
 */
export function requestLogger() {
  return createMiddleware<AppEnv>(async function requestLogger(c, next) {
    const started = Date.now()
    const rl = new RequestLog()
    c.set('requestLog', rl)
    // Parsing the config here makes a misconfigured gateway fail every request loudly, health included.
    const config = loadConfig(c.env)
    c.set('config', config)
    setLogLevel(config.LOG_LEVEL)
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

    if (rl.route !== undefined) {
      metrics.inc('twinserve_gateway_requests_total', {
        route: rl.route,
        model: rl.model,
        status: String(status),
      })
      metrics.observe(
        'twinserve_gateway_request_duration_ms',
        { route: rl.route, model: rl.model },
        durationMs,
      )
    }
    if (rl.attempts > 1)
      metrics.inc('twinserve_gateway_retries_total', { model: rl.model }, rl.attempts - 1)
    if (rl.coldStart) {
      metrics.inc('twinserve_gateway_cold_starts_total', {
        model: rl.model,
        result: rl.coldStart.result,
      })
      metrics.observe(
        'twinserve_gateway_cold_start_wait_ms',
        { model: rl.model },
        rl.coldStart.waited_ms,
      )
    }
    if (rl.rejection)
      metrics.inc('twinserve_gateway_rejections_total', { reason: rl.rejection, tenant: rl.tenant })

    const flush = scheduleMetricsFlush(c.env, config)
    if (flush)
      try {
        c.executionCtx.waitUntil(flush)
      } catch {
        // No execution context (a direct app.request in a unit test): flush inline instead.
        await flush
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
