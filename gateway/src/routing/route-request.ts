/**
 * Routing with failover: pick a runner from the isolate's registry snapshot (power of two choices), call it
 * signed, and on a connection failure, timeout, 5xx or malformed answer try a different runner, within the
 * request's deadline and MAX_ATTEMPTS (inference is idempotent, so a retry is safe). When no runner holds the
 * model, the request waits in the registry object for one to register (cold start), up to COLD_START_WAIT_MS.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { z } from 'zod'
import type { GatewayConfig } from '../config.ts'
import type { RequestLog } from '../http/request-log-entry.ts'
import { metrics } from '../metrics/metrics-flush.ts'
import { errorFields, log } from '../util/log.ts'
import { registryStub } from './registry-stub.ts'
import { callRunner, type RunnerResult } from './runner-client.ts'
import { routingSnapshot, runnerPool } from './runner-pool.ts'

export const RUNNER_HEADER = 'x-twinserve-runner'

export interface RouteInput {
  env: Env
  config: GatewayConfig
  secret: string
  requestId: string
  requestLog: RequestLog
  model: string
  variant?: string | undefined
  method: 'GET' | 'POST'
  path: string
  body: string
  okSchema: z.ZodType
  /** Absolute deadline (ms since epoch) for the whole request. */
  deadlineMs: number
}

type Failure = Extract<RunnerResult, { kind: 'failure' }>

function jsonResponse(status: number, body: string, headers: Record<string, string>): Response {
  return new Response(body, {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  })
}

export async function routeRequest(input: RouteInput): Promise<Response> {
  const { config, requestLog: rl, model } = input
  const registry = registryStub(input.env)
  const pool = runnerPool(config)
  let snapshot = await routingSnapshot(pool, () => registry.snapshot())
  const tried: string[] = []
  let lastFailure: Failure | undefined

  for (let attempt = 1; attempt <= config.MAX_ATTEMPTS; attempt++) {
    const remaining = input.deadlineMs - Date.now()
    if (remaining <= 0) break
    let holders = pool.holders(snapshot, model, Date.now())
    if (holders.length === 0 && attempt === 1) {
      // Our snapshot may just be stale; the registry answers at once if a runner holds the model, and
      // otherwise holds the request until one registers (cold start) or the wait is over.
      const waited = await registry.waitForModel(
        model,
        Math.min(config.COLD_START_WAIT_MS, remaining),
      )
      pool.adopt(waited.snapshot, Date.now())
      snapshot = waited.snapshot
      holders = pool.holders(snapshot, model, Date.now())
      if (waited.cold) {
        const served = holders.length > 0
        rl.coldStart = { waited_ms: waited.waited_ms, result: served ? 'served' : 'timed_out' }
        log(served ? 'info' : 'warn', served ? 'cold_start_served' : 'cold_start_timeout', {
          request_id: input.requestId,
          model,
          waited_ms: waited.waited_ms,
        })
      }
      if (holders.length === 0)
        throw new AppError(
          'NO_RUNNER',
          `no runner holds model '${model}' (waited ${waited.waited_ms} ms for one to start)`,
          { retryAfter: config.COLD_START_RETRY_AFTER_S },
        )
    }
    const now = Date.now()
    const runner = pool.pick(holders, model, input.variant, tried, now)
    if (!runner) break

    rl.attempts = attempt
    rl.runnerId = runner.runner_id
    pool.dispatch(runner.runner_id, now)
    const result = await callRunner({
      baseUrl: runner.url,
      method: input.method,
      path: input.path,
      body: input.body,
      requestId: input.requestId,
      deadlineMs: input.deadlineMs,
      secret: input.secret,
      okSchema: input.okSchema,
    })
    const ended = Date.now()
    const outcome =
      result.kind === 'answer' ? (result.status < 400 ? 'ok' : 'client_error') : result.outcome
    const opened = pool.settle(runner.runner_id, outcome, ended)
    metrics.inc('twinserve_gateway_runner_requests_total', {
      runner: runner.runner_id,
      model,
      outcome,
    })
    metrics.observe(
      'twinserve_gateway_runner_latency_ms',
      { runner: runner.runner_id, model },
      ended - now,
    )
    if (opened) {
      metrics.inc('twinserve_gateway_runner_events_total', { event: 'breaker_open' })
      log('warn', 'runner_breaker_open', {
        runner_id: runner.runner_id,
        consecutive_failures: pool.view(runner.runner_id, ended).consecutive_failures,
        last_outcome: outcome,
      })
    }
    if (result.kind === 'answer')
      return jsonResponse(result.status, result.body, { [RUNNER_HEADER]: runner.runner_id })

    tried.push(runner.runner_id)
    lastFailure = result
    log('warn', 'runner_attempt_failed', {
      request_id: input.requestId,
      runner_id: runner.runner_id,
      model,
      attempt,
      outcome: result.outcome,
      detail: result.detail,
    })
  }

  // Out of attempts, runners or time.
  if (Date.now() >= input.deadlineMs)
    throw new AppError(
      'RUNNER_TIMEOUT',
      `deadline passed after ${tried.length} attempt(s) for model '${model}'`,
    )
  if (lastFailure?.status !== undefined && lastFailure.body !== undefined) {
    // A runner did answer (e.g. 503 overloaded): its answer says more than ours would.
    const headers: Record<string, string> = { [RUNNER_HEADER]: tried.at(-1) ?? '' }
    if (lastFailure.retryAfter) headers['retry-after'] = lastFailure.retryAfter
    try {
      const parsed = JSON.parse(lastFailure.body) as unknown
      if (parsed && typeof parsed === 'object' && 'error' in parsed)
        return jsonResponse(
          lastFailure.status,
          JSON.stringify({ ...parsed, request_id: input.requestId }),
          headers,
        )
    } catch (err) {
      log('debug', 'runner_error_body_unparsed', {
        request_id: input.requestId,
        ...errorFields(err),
      })
    }
  }
  throw new AppError(
    'NO_RUNNER',
    tried.length > 0
      ? `all ${tried.length} runner(s) tried for model '${model}' failed (last: ${lastFailure?.detail ?? 'unknown'})`
      : `no runner for model '${model}' can take requests now (all unavailable)`,
    { retryAfter: config.COLD_START_RETRY_AFTER_S },
  )
}
