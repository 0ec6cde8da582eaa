/**
 * The access log: one structured line per request, its counters, and the request's config (parsed here, first,
 * so a misconfigured gateway fails every request loudly).
 * @module
 */
import { httpStatusOf } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'
import { type GatewayConfig, loadConfig } from '../config.ts'
import { scheduleMetricsFlush } from '../metrics/metrics-flush.ts'
import { countRequest } from '../metrics/request-metrics.ts'
import { runnerPool } from '../routing/runner-pool.ts'
import { log, setLogLevel } from '../util/log.ts'
import { RequestLog, type RouteLabel } from './request-log-entry.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** Fields the access log writes when the request ends; handlers add to it. */
    requestLog: RequestLog
    /** The gateway's tunables, parsed from the bindings once per env object. */
    config: GatewayConfig
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
    // A caller that hung up got nothing; counted as 499 (nginx's), like the runner does, never as a 5xx.
    const status = c.req.raw.signal.aborted ? httpStatusOf('CLIENT_CLOSED') : c.res.status
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

    const pool = runnerPool(config)
    countRequest(
      rl,
      status,
      durationMs,
      (model) => pool.knows(model),
      (model, expert) => pool.knowsExpert(model, expert),
    )

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
export function countAs(route: RouteLabel) {
  return createMiddleware<AppEnv>(async function countAs(c, next) {
    const rl = c.get('requestLog')
    rl.route = route
    rl.model = (c.req.param('model') ?? '').slice(0, 128)
    await next()
  })
}
