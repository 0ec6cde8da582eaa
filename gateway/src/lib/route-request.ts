/**
 * Routing with failover: ask the registry for a runner (power of two choices; on the first try it may wait for
 * a cold start), call it signed, and on a connection failure, timeout, 5xx or malformed answer try a different
 * runner, within the request's deadline and MAX_ATTEMPTS. Inference is idempotent, so a retry is safe.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { z } from 'zod'
import type { GatewayConfig } from '../config.ts'
import type { AttemptReport } from '../durable-objects/runner-registry.ts'
import type { Bindings } from '../env.ts'
import type { RequestLog } from '../middleware/request-log/index.ts'
import { errorFields, log } from './log.ts'
import { registryStub } from './registry-stub.ts'
import { callRunner, type RunnerResult } from './runner-client.ts'

export const RUNNER_HEADER = 'x-twinserve-runner'

export interface RouteInput {
  env: Bindings
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
  const tried: string[] = []
  let report: AttemptReport | undefined
  let lastFailure: Failure | undefined

  for (let attempt = 1; attempt <= config.MAX_ATTEMPTS; attempt++) {
    const remaining = input.deadlineMs - Date.now()
    if (remaining <= 0) break
    const acquired = await registry.acquire({
      model,
      variant: input.variant,
      exclude: tried,
      // Only the first look waits for a cold start; a retry takes what is there now.
      wait_ms: attempt === 1 ? Math.min(config.COLD_START_WAIT_MS, remaining) : 0,
      report,
    })
    report = undefined
    if (attempt === 1 && acquired.cold) {
      rl.coldStart = {
        waited_ms: acquired.waited_ms,
        result: acquired.ok ? 'served' : 'timed_out',
      }
      log(acquired.ok ? 'info' : 'warn', acquired.ok ? 'cold_start_served' : 'cold_start_timeout', {
        request_id: input.requestId,
        model,
        waited_ms: acquired.waited_ms,
        runner_id: acquired.ok ? acquired.runner_id : undefined,
      })
    }
    if (!acquired.ok) {
      if (attempt === 1 && acquired.reason === 'no_runner')
        throw new AppError(
          'NO_RUNNER',
          `no runner holds model '${model}' (waited ${acquired.waited_ms} ms for one to start)`,
          { retryAfter: config.COLD_START_RETRY_AFTER_S },
        )
      break
    }

    rl.attempts = attempt
    rl.runnerId = acquired.runner_id
    const started = Date.now()
    const result = await callRunner({
      baseUrl: acquired.url,
      method: input.method,
      path: input.path,
      body: input.body,
      requestId: input.requestId,
      deadlineMs: input.deadlineMs,
      secret: input.secret,
      okSchema: input.okSchema,
    })
    const latency = Date.now() - started
    if (result.kind === 'answer') {
      rl.pendingAttempt = {
        runner_id: acquired.runner_id,
        model,
        outcome: result.status < 400 ? 'ok' : 'client_error',
        latency_ms: latency,
      }
      return jsonResponse(result.status, result.body, { [RUNNER_HEADER]: acquired.runner_id })
    }
    report = {
      runner_id: acquired.runner_id,
      model,
      outcome: result.outcome,
      latency_ms: latency,
    }
    tried.push(acquired.runner_id)
    lastFailure = result
    log('warn', 'runner_attempt_failed', {
      request_id: input.requestId,
      runner_id: acquired.runner_id,
      model,
      attempt,
      outcome: result.outcome,
      detail: result.detail,
    })
  }

  // Out of attempts, runners or time. The registry still has to hear about the last failure.
  rl.pendingAttempt = report
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
