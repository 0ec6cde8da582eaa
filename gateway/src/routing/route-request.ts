/**
 * Routing with failover: pick a runner from the isolate's registry snapshot (power of two choices), call it
 * signed, and on a connection failure, timeout, 5xx or malformed answer try a different runner, within the
 * request's deadline and MAX_ATTEMPTS (inference is idempotent, so a retry is safe). When no runner holds the
 * model, the request waits in the registry object for one to register (cold start), up to COLD_START_WAIT_MS.
 *
 * Against a runner that hangs (issue #16: a SIGSTOPped runner held its requests for the caller's whole deadline):
 * - every attempt has its own budget, ATTEMPT_TIMEOUT_FACTOR × the p99 latency this isolate has seen for the
 *   model and request class (at least ATTEMPT_TIMEOUT_MIN_MS; the caller's deadline while the class has too few
 *   samples); running out of it is the runner's fault (breaker), running out of the caller's deadline is not;
 * - an attempt unanswered past the p99 (at least HEDGE_MIN_MS) is hedged: the request also goes to another
 *   runner, the first answer wins and the other attempt is abandoned (within the HEDGE_BUDGET_PERCENT budget;
 *   per-request merges are not hedged, a second merge would double an expensive miss), and the late attempt's
 *   runner becomes a suspect that new requests avoid while another runner can take them (runner-pool.ts): a
 *   frozen runner costs only the few requests that found it out their hedge delay;
 * - a generation (`generation`) is not hedged and has no p99 budget of its own (its length is the caller's
 *   `max_tokens`, not the model's): it keeps the caller's deadline, and its latency is not recorded; a streamed
 *   one (`stream`) is committed at its first bytes (runner-client.ts), so failover happens only before them,
 *   and its deadline bounds the wait for them, not the stream;
 * - each new attempt picks from a fresh runner list (the snapshot cache, at most ROUTING_CACHE_MS old), so a
 *   request that waited does not judge the runners by the list it started with.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { z } from 'zod'
import type { GatewayConfig } from '../config.ts'
import type { RequestLog } from '../http/request-log-entry.ts'
import { metrics } from '../metrics/metrics-flush.ts'
import { errorFields, log } from '../util/log.ts'
import { type ColdStartResult, type RunnerRecord, servesVersion } from './registry-snapshot.ts'
import { registryStub } from './registry-stub.ts'
import { callRunner, type RunnerResult } from './runner-client.ts'
import { type AttemptOutcome, type RunnerPool, routingSnapshot, runnerPool } from './runner-pool.ts'

export const RUNNER_HEADER = 'x-twinserve-runner'
/** How the attempts went, when ROUTE_TRACE is on (config.ts). */
export const ROUTE_TRACE_HEADER = 'x-twinserve-route-trace'

export interface RouteInput {
  env: Env
  config: GatewayConfig
  secret: string
  requestId: string
  requestLog: RequestLog
  model: string
  /** The authenticated caller's tenant, signed into the runner call. */
  tenant?: string
  variant?: string | undefined
  /** Only runners announcing the model at this package version (a rollout's choice; the path names it too). */
  version?: string
  /** …and only runners of this group (a rollout's target group). */
  group?: string
  /** A per-request merge (`merge_method`): timed by its own class, never hedged. */
  merge?: boolean
  method: 'GET' | 'POST'
  path: string
  /** JSON text, or a binary tensor body (with `bodyHeaders` saying so). */
  body: string | Uint8Array
  bodyHeaders?: Record<string, string>
  okSchema: z.ZodType
  /** A fast accept of `okSchema` (runner-client.ts). */
  okCheck?: (json: unknown) => boolean
  /** A text generation (/v1, /v2 generate): never hedged, the caller's deadline as its budget. */
  generation?: boolean
  /** …asked with `stream: true`: the answer's events are passed on as they arrive. */
  stream?: boolean
  /** Absolute deadline (ms since epoch) for the whole request. */
  deadlineMs: number
  /** Aborted when the caller goes away: attempts still running are abandoned. */
  clientSignal?: AbortSignal
  /** Keeps work alive after the response (the execution context's waitUntil). */
  waitUntil?: (work: Promise<unknown>) => void
}

type Failure = Extract<RunnerResult, { kind: 'failure' }>

interface Attempt {
  runner: RunnerRecord
  startedAt: number
  abort: AbortController
  hedge: boolean
  /** When its own budget runs out (ms since epoch). */
  endsAt: number
  done: Promise<RunnerResult>
}

function jsonResponse(status: number, body: string, headers: Record<string, string>): Response {
  return new Response(body, {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  })
}

/** A runner's answer to the caller: JSON as ever, or a binary infer answer with its own headers. */
function answerResponse(
  result: Extract<RunnerResult, { kind: 'answer' }>,
  headers: Record<string, string>,
): Response {
  if (typeof result.body === 'string') return jsonResponse(result.status, result.body, headers)
  return new Response(result.body as Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array>, {
    status: result.status,
    headers: { ...result.headers, ...headers },
  })
}

const HEDGE = Symbol('hedge')

/** Outcomes of an attempt that the runner answered (with any status). */
const ANSWERED: ReadonlySet<AttemptOutcome> = new Set([
  'ok',
  'client_error',
  'overloaded',
  'server_error',
  'bad_response',
])

/** One request's attempts: started, raced, hedged, settled. */
class Route {
  private readonly pool: RunnerPool
  private stub: ReturnType<typeof registryStub> | undefined
  private readonly tried: string[] = []
  private readonly running = new Set<Attempt>()
  private lastFailure: Failure | undefined
  private hedged = false
  /** ROUTE_TRACE's steps, `+ms event`; undefined (and never built) when it is off. */
  private readonly trace: string[] | undefined
  private readonly began = Date.now()

  constructor(private readonly input: RouteInput) {
    this.pool = runnerPool(input.config)
    this.trace = input.config.ROUTE_TRACE ? [] : undefined
  }

  private note(event: string): void {
    this.trace?.push(`+${Date.now() - this.began} ${event}`)
  }

  /** The registry object's stub, made when first needed: with a fresh snapshot, a request never is. */
  private get registry(): ReturnType<typeof registryStub> {
    this.stub ??= registryStub(this.input.env)
    return this.stub
  }

  private remaining(): number {
    return this.input.deadlineMs - Date.now()
  }

  /** The observed p99 for this request's class, or undefined while there are too few samples. */
  private p99(): number | undefined {
    const { model, body, merge } = this.input
    return this.pool.latency.p99(model, body.length, merge === true)
  }

  async run(): Promise<Response> {
    const { config } = this.input
    this.pool.hedges.earn()
    if (this.trace)
      this.note(`p99=${this.p99() ?? 'none'} hedges=${this.pool.hedges.available.toFixed(1)}`)
    for (;;) {
      if (this.input.clientSignal?.aborted)
        throw new AppError('CLIENT_CLOSED', 'the client closed the connection before the answer')
      if (this.running.size === 0) {
        if (this.tried.length >= config.MAX_ATTEMPTS || this.remaining() <= 0) break
        const runner = await this.pick()
        if (!runner) break
        this.start(runner, false)
      }
      const hedgeIn = this.hedgeDelay()
      let timer: ReturnType<typeof setTimeout> | undefined
      const hedge =
        hedgeIn === undefined
          ? []
          : [
              new Promise<typeof HEDGE>(
                (resolve) => (timer = setTimeout(() => resolve(HEDGE), hedgeIn)),
              ),
            ]
      const next = await Promise.race([
        ...[...this.running].map((attempt) => attempt.done.then((result) => ({ attempt, result }))),
        ...hedge,
      ])
      if (timer !== undefined) clearTimeout(timer)
      if (next === HEDGE) {
        this.hedged = true
        for (const attempt of this.running)
          this.pool.overdue(attempt.runner.runner_id, attempt.endsAt)
        const budget = this.pool.hedges.take()
        const runner = budget ? await this.pick() : undefined
        if (this.trace) this.note(`hedge ${budget ? (runner ? 'sent' : 'no runner') : 'no budget'}`)
        if (runner) this.start(runner, true)
        continue
      }
      this.running.delete(next.attempt)
      const answered = this.settle(next.attempt, next.result)
      if (answered) return answered
    }
    return this.giveUp()
  }

  /**
   * Ms until the one running attempt should be hedged, or undefined when it should not be: hedging is off or
   * spent, the request merges per request, there is no p99 yet, or attempts are used up.
   */
  private hedgeDelay(): number | undefined {
    const { config, merge, generation } = this.input
    const [only] = this.running
    if (this.running.size !== 1 || !only || this.hedged || merge || generation) return undefined
    if (this.tried.length >= config.MAX_ATTEMPTS || config.HEDGE_BUDGET_PERCENT === 0)
      return undefined
    const p99 = this.p99()
    if (p99 === undefined) return undefined
    const at = only.startedAt + Math.max(config.HEDGE_MIN_MS, p99)
    if (at >= this.input.deadlineMs) return undefined
    return Math.max(0, at - Date.now())
  }

  /**
   * A runner holding the model not tried yet (no suspect while there is another, runner-pool.ts), from a fresh
   * list; the first pick may wait out a cold start.
   */
  private async pick(): Promise<RunnerRecord | undefined> {
    const { config, model } = this.input
    let snapshot = await routingSnapshot(this.pool, () => this.registry.snapshot())
    let holders = this.pool.holders(snapshot, model, Date.now())
    if (holders.length === 0 && this.tried.length === 0) {
      const waited = await this.waitForRunner()
      if (!waited.known)
        throw new AppError(
          'NOT_FOUND',
          `model '${model}' is not served here: no runner serves or has served it (models: ${
            waited.snapshot.catalog.map((m) => m.name).join(', ') || 'none yet'
          })`,
        )
      snapshot = waited.snapshot
      holders = this.pool.holders(snapshot, model, Date.now())
      if (holders.length === 0)
        throw new AppError(
          'NO_RUNNER',
          `no runner holds model '${model}' (waited ${this.input.requestLog.coldStart?.waited_ms ?? 0} ms for one to start)`,
          { retryAfter: config.COLD_START_RETRY_AFTER_S },
        )
    }
    const { version, group } = this.input
    if (version !== undefined) {
      holders = holders.filter((r) => servesVersion(r, model, version, group))
      if (holders.length === 0 && this.tried.length === 0)
        throw new AppError(
          'NO_RUNNER',
          `no runner holds model '${model}' at version '${version}'${group === undefined ? '' : ` in group '${group}'`} (the model's rollout routes there)`,
          { retryAfter: config.COLD_START_RETRY_AFTER_S },
        )
    }
    const now = Date.now()
    if (this.trace)
      this.note(
        `pick among ${holders
          .map((r) => {
            const v = this.pool.view(r.runner_id, now)
            const suspect = this.pool.suspectFor(r.runner_id, now)
            return `${r.runner_id}:${v.breaker}/out=${v.outstanding}/age=${now - r.last_seen}${suspect ? `/suspect=${suspect}` : ''}`
          })
          .join(',')}`,
      )
    return this.pool.pick(holders, model, this.input.variant, this.tried, now)
  }

  /**
   * Our snapshot may just be stale; the registry answers at once if a runner holds the model, and otherwise
   * holds the request until one registers (cold start) or the wait is over.
   */
  private async waitForRunner(): Promise<ColdStartResult> {
    const { config, model, requestLog: rl } = this.input
    const waited = await this.registry.waitForModel(
      model,
      Math.min(config.COLD_START_WAIT_MS, Math.max(0, this.remaining())),
    )
    this.pool.adopt(waited.snapshot, Date.now())
    if (waited.cold) {
      const served = this.pool.holders(waited.snapshot, model, Date.now()).length > 0
      rl.coldStart = { waited_ms: waited.waited_ms, result: served ? 'served' : 'timed_out' }
      log(served ? 'info' : 'warn', served ? 'cold_start_served' : 'cold_start_timeout', {
        request_id: this.input.requestId,
        model,
        waited_ms: waited.waited_ms,
      })
    }
    return waited
  }

  private start(runner: RunnerRecord, hedge: boolean): void {
    const { config, requestLog: rl } = this.input
    const now = Date.now()
    const remaining = this.input.deadlineMs - now
    const p99 = this.p99()
    // Without a p99 for this class (a new isolate, an unusual body size) nothing says how long an answer takes,
    // and a per-request merge may take many times a plain request (a cache miss): both keep the caller's
    // deadline, and running out of it is nobody's fault.
    const own =
      this.input.merge || this.input.generation || p99 === undefined
        ? Number.POSITIVE_INFINITY
        : Math.max(config.ATTEMPT_TIMEOUT_MIN_MS, config.ATTEMPT_TIMEOUT_FACTOR * p99)
    const callerBound = remaining <= own
    const abort = new AbortController()
    const signal = this.input.clientSignal
      ? AbortSignal.any([abort.signal, this.input.clientSignal])
      : abort.signal
    this.tried.push(runner.runner_id)
    rl.attempts = this.tried.length
    rl.runnerId = runner.runner_id
    this.pool.dispatch(runner.runner_id, now)
    const done = callRunner({
      baseUrl: runner.url,
      method: this.input.method,
      path: this.input.path,
      body: this.input.body,
      ...(this.input.bodyHeaders ? { bodyHeaders: this.input.bodyHeaders } : {}),
      requestId: this.input.requestId,
      ...(this.input.tenant ? { tenant: this.input.tenant } : {}),
      budgetMs: callerBound ? remaining : own,
      callerBound,
      signal,
      secret: this.input.secret,
      okSchema: this.input.okSchema,
      ...(this.input.okCheck ? { okCheck: this.input.okCheck } : {}),
      ...(this.input.stream ? { stream: true } : {}),
    })
    const endsAt = now + (callerBound ? remaining : own)
    this.running.add({ runner, startedAt: now, abort, hedge, endsAt, done })
    if (this.trace)
      this.note(
        `${hedge ? 'hedge' : 'attempt'} ${runner.runner_id} budget=${callerBound ? `caller:${remaining}` : own}`,
      )
    if (hedge)
      log('info', 'runner_attempt_hedged', {
        request_id: this.input.requestId,
        runner_id: runner.runner_id,
        model: this.input.model,
      })
  }

  /** Books an attempt's end; the response when it answered (the others are abandoned), else undefined. */
  private settle(attempt: Attempt, result: RunnerResult): Response | undefined {
    const { model } = this.input
    const ended = Date.now()
    const id = attempt.runner.runner_id
    const outcome: AttemptOutcome =
      result.kind === 'answer' ? (result.status < 400 ? 'ok' : 'client_error') : result.outcome
    this.account(attempt, outcome, ended)
    if (this.trace)
      this.note(`${id} ${outcome}${result.kind === 'answer' ? ` ${result.status}` : ''}`)
    if (result.kind === 'answer') {
      if (!this.input.generation)
        this.pool.latency.record(
          model,
          this.input.body.length,
          this.input.merge === true,
          ended - attempt.startedAt,
        )
      for (const other of this.running) this.letRun(other)
      this.running.clear()
      this.input.requestLog.runnerId = id
      if (result.routing !== undefined) this.input.requestLog.routing = result.routing
      return answerResponse(result, {
        [RUNNER_HEADER]: id,
        ...(this.trace ? { [ROUTE_TRACE_HEADER]: this.trace.join('; ') } : {}),
        ...(result.retryAfter ? { 'retry-after': result.retryAfter } : {}),
      })
    }
    this.lastFailure = result
    this.logFailure(attempt, result, false)
    return undefined
  }

  /**
   * `runner_attempt_failed` (debug when abandoned). `afterAnswer`: the attempt failed after another one had
   * answered the request (hedging): the caller lost nothing, but the runner's failure is news all the same.
   */
  private logFailure(attempt: Attempt, result: Failure, afterAnswer: boolean): void {
    const id = attempt.runner.runner_id
    log(result.outcome === 'abandoned' ? 'debug' : 'warn', 'runner_attempt_failed', {
      request_id: this.input.requestId,
      runner_id: id,
      model: this.input.model,
      attempt: this.tried.indexOf(id) + 1,
      hedge: attempt.hedge,
      ...(afterAnswer ? { after_answer: true } : {}),
      outcome: result.outcome,
      detail: result.detail,
    })
  }

  /**
   * An attempt another one beat (hedging) runs on after the response, up to its own budget, and its end is
   * booked then: a runner that never answers times out and its breaker learns of it, and until then its
   * outstanding count keeps new picks away. Without waitUntil (nothing may run after the response) it is
   * abandoned at once.
   */
  private letRun(attempt: Attempt): void {
    const book = (outcome: AttemptOutcome) => {
      this.account(attempt, outcome, Date.now())
    }
    const waitUntil = this.input.waitUntil
    if (!waitUntil) {
      attempt.abort.abort()
      book('abandoned')
      return
    }
    waitUntil(
      attempt.done.then((result) => {
        if (result.kind === 'failure') this.logFailure(attempt, result, true)
        book(
          result.kind === 'answer' ? (result.status < 400 ? 'ok' : 'client_error') : result.outcome,
        )
      }),
    )
  }

  private account(attempt: Attempt, outcome: AttemptOutcome, now: number): void {
    const { model } = this.input
    const runnerId = attempt.runner.runner_id
    const ms = now - attempt.startedAt
    const opened = this.pool.settle(runnerId, outcome, now)
    // Any answer, however late, shows the runner alive: no suspect (runner-pool.ts). An attempt that ran out of
    // its own budget keeps its runner one for another budget: else, with the breaker not yet open, every
    // request arriving as the overdue attempts time out would go to the runner just released and wait for a hedge.
    if (ANSWERED.has(outcome)) this.pool.answered(runnerId, now)
    else if (outcome === 'timeout')
      this.pool.overdue(runnerId, now + (attempt.endsAt - attempt.startedAt))
    metrics.inc('twinserve_gateway_runner_requests_total', { runner: runnerId, model, outcome })
    metrics.observe('twinserve_gateway_runner_latency_ms', { runner: runnerId, model }, ms)
    if (!opened) return
    metrics.inc('twinserve_gateway_runner_events_total', { event: 'breaker_open' })
    log('warn', 'runner_breaker_open', {
      runner_id: runnerId,
      consecutive_failures: this.pool.view(runnerId, now).consecutive_failures,
      last_outcome: outcome,
    })
  }

  /** Out of attempts, runners or time. */
  private giveUp(): Response {
    const { model, requestId, config } = this.input
    const lastFailure = this.lastFailure
    if (Date.now() >= this.input.deadlineMs)
      throw new AppError(
        'RUNNER_TIMEOUT',
        `deadline passed after ${this.tried.length} attempt(s) for model '${model}'`,
      )
    if (lastFailure?.status !== undefined && lastFailure.body !== undefined) {
      // A runner did answer (e.g. 503 overloaded): its answer says more than ours would.
      const headers: Record<string, string> = { [RUNNER_HEADER]: this.tried.at(-1) ?? '' }
      if (lastFailure.retryAfter) headers['retry-after'] = lastFailure.retryAfter
      try {
        const parsed = JSON.parse(lastFailure.body) as unknown
        if (parsed && typeof parsed === 'object' && 'error' in parsed)
          return jsonResponse(
            lastFailure.status,
            JSON.stringify({ ...parsed, request_id: requestId }),
            headers,
          )
      } catch (err) {
        log('debug', 'runner_error_body_unparsed', { request_id: requestId, ...errorFields(err) })
      }
    }
    throw new AppError(
      'NO_RUNNER',
      this.tried.length > 0
        ? `all ${this.tried.length} runner(s) tried for model '${model}' failed (last: ${lastFailure?.detail ?? 'unknown'})`
        : `no runner for model '${model}' can take requests now (all unavailable)`,
      { retryAfter: config.COLD_START_RETRY_AFTER_S },
    )
  }
}

export async function routeRequest(input: RouteInput): Promise<Response> {
  return new Route(input).run()
}
