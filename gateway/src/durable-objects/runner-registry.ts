/**
 * The runner registry: one Durable Object (`RUNNER_REGISTRY.getByName('global')`) that every gateway isolate
 * asks which runner serves a request. It holds
 * - membership (SQLite): what each runner registered and when it last heartbeated; silent runners expire after
 *   3 heartbeat intervals (checked on every read, and pruned by an alarm when nothing reads);
 * - per-runner circuit breakers and the requests in flight there (memory: volatile by design, a fresh object
 *   simply starts with every breaker closed);
 * - cold-start waiters: requests for a model no runner holds park here until one registers or they time out;
 * - the gateway's counters (SQLite), since this object already sees every routed request.
 * @module
 */

import { DurableObject } from 'cloudflare:workers'
import type {
  MetricFamily,
  RegistryAck,
  RunnerList,
  RunnerLoad,
  RunnerRegistration,
  RunnerStatus,
} from '@twinserve/shared'
import { loadConfig, type RegistryConfig } from '../config.ts'
import type { Bindings } from '../env.ts'
import { CircuitBreaker } from '../lib/circuit-breaker.ts'
import { log } from '../lib/log.ts'
import { type GaugeValue, MetricsStore } from '../lib/metrics-store.ts'
import { pickPowerOfTwo } from '../lib/power-of-two.ts'

/** A runner missing this many heartbeat intervals in a row is expired. */
export const EXPIRY_INTERVALS = 3

/** What one attempt at a runner came to; the failure kinds count against its circuit breaker. */
export type AttemptOutcome =
  | 'ok'
  | 'client_error'
  | 'overloaded'
  | 'server_error'
  | 'connect_error'
  | 'timeout'
  | 'bad_response'

const BREAKER_FAILURES: ReadonlySet<AttemptOutcome> = new Set([
  'server_error',
  'connect_error',
  'timeout',
  'bad_response',
])

export interface AttemptReport {
  runner_id: string
  model: string
  outcome: AttemptOutcome
  latency_ms: number
}

export interface AcquireRequest {
  model: string
  /** The requested `parameters.variant`: runners listing it are preferred. */
  variant?: string | undefined
  /** Runners already tried by this request. */
  exclude: readonly string[]
  /** Cold-start wait: how long to wait for a runner holding the model to register. */
  wait_ms: number
  /** The previous attempt's outcome, folded into this call to save a round trip on failover. */
  report?: AttemptReport | undefined
}

export type AcquireResult =
  | { ok: true; runner_id: string; url: string; cold: boolean; waited_ms: number }
  | {
      ok: false
      /** no_runner: nothing holds the model (after any wait); unavailable: holders exist but none can take it. */
      reason: 'no_runner' | 'unavailable'
      cold: boolean
      waited_ms: number
    }

/** Everything the gateway learned from one request, sent once when it ends (off the response path). */
export interface RequestReport {
  route: string
  model: string
  status: number
  duration_ms: number
  /** The last attempt, not yet reported through acquire. */
  attempt?: AttemptReport | undefined
  retries: number
  cold_start?: { waited_ms: number; result: 'served' | 'timed_out' } | undefined
  rejection?: { reason: string; tenant: string } | undefined
}

interface RunnerRow extends Record<string, SqlStorageValue> {
  runner_id: string
  url: string
  provider: string
  models: string
  load: string
  draining: number
  registered_at: number
  last_seen: number
}

interface Runner {
  runner_id: string
  url: string
  provider: 'cuda' | 'cpu'
  models: RunnerRegistration['models']
  load: RunnerLoad
  draining: boolean
  registered_at: number
  last_seen: number
}

const toRunner = (r: RunnerRow): Runner => ({
  runner_id: r.runner_id,
  url: r.url,
  provider: r.provider === 'cuda' ? 'cuda' : 'cpu',
  models: JSON.parse(r.models) as Runner['models'],
  load: JSON.parse(r.load) as RunnerLoad,
  draining: r.draining === 1,
  registered_at: r.registered_at,
  last_seen: r.last_seen,
})

interface Waiter {
  model: string
  wake: () => void
}

export class RunnerRegistry extends DurableObject<Bindings> {
  private readonly sql: SqlStorage
  private readonly metrics: MetricsStore
  private readonly breakers = new Map<string, CircuitBreaker>()
  private readonly outstanding = new Map<string, number>()
  private readonly waiters = new Set<Waiter>()

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env)
    this.sql = ctx.storage.sql
    this.sql.exec(`CREATE TABLE IF NOT EXISTS runners (
      runner_id TEXT PRIMARY KEY, url TEXT NOT NULL, provider TEXT NOT NULL, models TEXT NOT NULL,
      load TEXT NOT NULL, draining INTEGER NOT NULL, registered_at INTEGER NOT NULL, last_seen INTEGER NOT NULL)`)
    this.metrics = new MetricsStore(this.sql)
  }

  private get config(): RegistryConfig {
    return loadConfig(this.env)
  }

  private get expiryMs(): number {
    return EXPIRY_INTERVALS * this.config.HEARTBEAT_INTERVAL_MS
  }

  private breaker(runnerId: string): CircuitBreaker {
    let b = this.breakers.get(runnerId)
    if (!b) {
      b = new CircuitBreaker({
        threshold: this.config.BREAKER_FAILURE_THRESHOLD,
        cooldownMs: this.config.BREAKER_COOLDOWN_MS,
      })
      this.breakers.set(runnerId, b)
    }
    return b
  }

  /** Deletes runners silent for too long; returns the live ones. */
  private liveRunners(now: number): Runner[] {
    const cutoff = now - this.expiryMs
    const expired = this.sql
      .exec<{ runner_id: string }>(
        'DELETE FROM runners WHERE last_seen < ? RETURNING runner_id',
        cutoff,
      )
      .toArray()
    for (const { runner_id } of expired) this.forget(runner_id, 'expire')
    return this.sql
      .exec<RunnerRow>('SELECT * FROM runners ORDER BY runner_id')
      .toArray()
      .map(toRunner)
  }

  private forget(runnerId: string, event: 'expire' | 'deregister'): void {
    this.breakers.delete(runnerId)
    this.outstanding.delete(runnerId)
    this.metrics.inc('twinserve_gateway_runner_events_total', { event })
    log('info', `runner_${event}`, { runner_id: runnerId })
  }

  private async scheduleExpiryAlarm(): Promise<void> {
    const row = this.sql
      .exec<{ oldest: number | null }>('SELECT MIN(last_seen) AS oldest FROM runners')
      .one()
    if (row.oldest === null) return
    const due = row.oldest + this.expiryMs + 1
    const current = await this.ctx.storage.getAlarm()
    if (current === null || current > due) await this.ctx.storage.setAlarm(due)
  }

  /** Register and heartbeat are the same upsert (the body is the runner's full state, so both are idempotent). */
  async register(reg: RunnerRegistration, kind: 'register' | 'heartbeat'): Promise<RegistryAck> {
    const now = Date.now()
    const known = this.sql
      .exec<{ url: string }>('SELECT url FROM runners WHERE runner_id = ?', reg.runner_id)
      .toArray()[0]
    this.sql.exec(
      `INSERT INTO runners (runner_id, url, provider, models, load, draining, registered_at, last_seen)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (runner_id) DO UPDATE SET url = excluded.url, provider = excluded.provider,
         models = excluded.models, load = excluded.load, draining = excluded.draining,
         last_seen = excluded.last_seen`,
      reg.runner_id,
      reg.url,
      reg.provider,
      JSON.stringify(reg.models),
      JSON.stringify(reg.load),
      reg.draining ? 1 : 0,
      now,
      now,
    )
    // A (re)started process, or one that moved, starts with a clean slate; a heartbeat keeps the breaker's memory.
    if (kind === 'register' || (known && known.url !== reg.url)) {
      this.breakers.delete(reg.runner_id)
      this.outstanding.delete(reg.runner_id)
    } else {
      // Our in-flight count can only leak upward (a report lost with its isolate); the runner's own count of
      // what it holds bounds it, since every gateway request it has not answered is in there.
      const held = reg.load.in_flight + reg.load.queue_depth
      const mine = this.outstanding.get(reg.runner_id) ?? 0
      if (mine > held) this.outstanding.set(reg.runner_id, held)
    }
    this.metrics.inc('twinserve_gateway_runner_events_total', { event: kind })
    if (kind === 'register' || !known)
      log('info', 'runner_register', {
        runner_id: reg.runner_id,
        url: reg.url,
        provider: reg.provider,
        models: reg.models.map((m) => m.name).join(','),
      })
    if (!reg.draining) {
      const ready = new Set(reg.models.filter((m) => m.ready).map((m) => m.name))
      for (const w of this.waiters) if (ready.has(w.model)) w.wake()
    }
    await this.scheduleExpiryAlarm()
    return { ok: true, heartbeat_interval_ms: this.config.HEARTBEAT_INTERVAL_MS }
  }

  async deregister(runnerId: string): Promise<RegistryAck> {
    const gone = this.sql
      .exec<{ runner_id: string }>(
        'DELETE FROM runners WHERE runner_id = ? RETURNING runner_id',
        runnerId,
      )
      .toArray()
    if (gone.length > 0) this.forget(runnerId, 'deregister')
    return { ok: true, heartbeat_interval_ms: this.config.HEARTBEAT_INTERVAL_MS }
  }

  override async alarm(): Promise<void> {
    this.liveRunners(Date.now())
    await this.scheduleExpiryAlarm()
  }

  private recordAttempt(a: AttemptReport): void {
    const now = Date.now()
    const left = (this.outstanding.get(a.runner_id) ?? 0) - 1
    if (left > 0) this.outstanding.set(a.runner_id, left)
    else this.outstanding.delete(a.runner_id)
    this.metrics.inc('twinserve_gateway_runner_requests_total', {
      runner: a.runner_id,
      model: a.model,
      outcome: a.outcome,
    })
    this.metrics.observe(
      'twinserve_gateway_runner_latency_ms',
      { runner: a.runner_id, model: a.model },
      a.latency_ms,
    )
    // A runner that expired or left meanwhile has no breaker to update.
    if (!this.sql.exec('SELECT 1 FROM runners WHERE runner_id = ?', a.runner_id).toArray().length)
      return
    const b = this.breaker(a.runner_id)
    if (BREAKER_FAILURES.has(a.outcome)) {
      const wasOpen = b.state(now) === 'open'
      b.onFailure(now)
      if (!wasOpen && b.state(now) === 'open') {
        this.metrics.inc('twinserve_gateway_runner_events_total', { event: 'breaker_open' })
        log('warn', 'runner_breaker_open', {
          runner_id: a.runner_id,
          consecutive_failures: b.consecutiveFailures,
          last_outcome: a.outcome,
        })
      }
    } else if (a.outcome === 'ok' || a.outcome === 'client_error') b.onSuccess()
  }

  private score(r: Runner): number {
    const reported = r.load.in_flight + r.load.queue_depth
    return Math.max(this.outstanding.get(r.runner_id) ?? 0, reported) / r.load.capacity
  }

  private holders(runners: readonly Runner[], model: string): Runner[] {
    return runners.filter((r) => !r.draining && r.models.some((m) => m.name === model && m.ready))
  }

  /**
   * Picks a runner for `model` (power of two choices over the healthy holders not yet tried) and counts the
   * request as in flight there. With no holder at all it waits up to `wait_ms` for one to register.
   */
  async acquire(req: AcquireRequest): Promise<AcquireResult> {
    if (req.report) this.recordAttempt(req.report)
    const started = Date.now()
    const deadline = started + req.wait_ms
    // Cold: no runner held the model when the request arrived, so it waited (or would have) for one.
    let cold = false
    for (;;) {
      const now = Date.now()
      const holders = this.holders(this.liveRunners(now), req.model)
      if (holders.length > 0) {
        const open = holders.filter(
          (r) => !req.exclude.includes(r.runner_id) && this.breaker(r.runner_id).allows(now),
        )
        const withVariant = req.variant
          ? open.filter((r) =>
              r.models.some((m) => m.name === req.model && m.variants.includes(req.variant ?? '')),
            )
          : []
        // Prefer runners that list the variant; if none does, any holder decides (versions may skew).
        const pool = withVariant.length > 0 ? withVariant : open
        const pick = pickPowerOfTwo(pool, (r) => this.score(r))
        if (!pick) return { ok: false, reason: 'unavailable', cold, waited_ms: now - started }
        this.breaker(pick.runner_id).onDispatch(now)
        this.outstanding.set(pick.runner_id, (this.outstanding.get(pick.runner_id) ?? 0) + 1)
        return {
          ok: true,
          runner_id: pick.runner_id,
          url: pick.url,
          cold,
          waited_ms: now - started,
        }
      }
      cold = true
      const remaining = deadline - now
      if (remaining <= 0) return { ok: false, reason: 'no_runner', cold, waited_ms: now - started }
      await this.waitForModel(req.model, remaining)
    }
  }

  private waitForModel(model: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        model,
        wake: () => {
          clearTimeout(timer)
          this.waiters.delete(waiter)
          resolve()
        },
      }
      const timer = setTimeout(waiter.wake, ms)
      this.waiters.add(waiter)
    })
  }

  /** Records a finished request's counters (called via waitUntil, after the response went out). */
  async finish(report: RequestReport): Promise<void> {
    if (report.attempt) this.recordAttempt(report.attempt)
    this.metrics.inc('twinserve_gateway_requests_total', {
      route: report.route,
      model: report.model,
      status: String(report.status),
    })
    this.metrics.observe(
      'twinserve_gateway_request_duration_ms',
      { route: report.route, model: report.model },
      report.duration_ms,
    )
    if (report.retries > 0)
      this.metrics.inc('twinserve_gateway_retries_total', { model: report.model }, report.retries)
    if (report.cold_start) {
      this.metrics.inc('twinserve_gateway_cold_starts_total', {
        model: report.model,
        result: report.cold_start.result,
      })
      this.metrics.observe(
        'twinserve_gateway_cold_start_wait_ms',
        { model: report.model },
        report.cold_start.waited_ms,
      )
    }
    if (report.rejection)
      this.metrics.inc('twinserve_gateway_rejections_total', {
        reason: report.rejection.reason,
        tenant: report.rejection.tenant,
      })
  }

  /** Whether a healthy runner holds `model` ready (any model when omitted). */
  async ready(model?: string): Promise<boolean> {
    const now = Date.now()
    return this.liveRunners(now).some(
      (r) =>
        !r.draining &&
        this.breaker(r.runner_id).allows(now) &&
        r.models.some((m) => m.ready && (model === undefined || m.name === model)),
    )
  }

  async list(): Promise<RunnerList> {
    const now = Date.now()
    const runners = this.liveRunners(now).map((r): RunnerStatus => {
      const b = this.breaker(r.runner_id)
      return {
        runner_id: r.runner_id,
        url: r.url,
        provider: r.provider,
        models: r.models,
        load: r.load,
        draining: r.draining,
        registered_at: new Date(r.registered_at).toISOString(),
        last_seen: new Date(r.last_seen).toISOString(),
        healthy: !r.draining && b.state(now) !== 'open',
        breaker: b.state(now),
        consecutive_failures: b.consecutiveFailures,
        outstanding: this.outstanding.get(r.runner_id) ?? 0,
      }
    })
    return { runners, heartbeat_interval_ms: this.config.HEARTBEAT_INTERVAL_MS }
  }

  async metricFamilies(): Promise<MetricFamily[]> {
    const { runners } = await this.list()
    const waiting = new Map<string, number>()
    for (const w of this.waiters) waiting.set(w.model, (waiting.get(w.model) ?? 0) + 1)
    const gauges: GaugeValue[] = [
      {
        name: 'twinserve_gateway_runners',
        labels: { state: 'healthy' },
        value: runners.filter((r) => r.healthy).length,
      },
      {
        name: 'twinserve_gateway_runners',
        labels: { state: 'draining' },
        value: runners.filter((r) => r.draining).length,
      },
      {
        name: 'twinserve_gateway_runners',
        labels: { state: 'breaker_open' },
        value: runners.filter((r) => r.breaker === 'open').length,
      },
      ...runners.map(
        (r): GaugeValue => ({
          name: 'twinserve_gateway_runner_outstanding',
          labels: { runner: r.runner_id },
          value: r.outstanding,
        }),
      ),
      ...[...waiting].map(
        ([model, n]): GaugeValue => ({
          name: 'twinserve_gateway_cold_start_waiting',
          labels: { model },
          value: n,
        }),
      ),
    ]
    return this.metrics.families(gauges)
  }
}
