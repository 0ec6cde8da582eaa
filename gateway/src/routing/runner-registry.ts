/**
 * The runner registry: one Durable Object (`RUNNER_REGISTRY.getByName('global')`), the source of truth for
 * membership. It holds
 * - what each runner registered and when it last heartbeated (SQLite); silent runners expire after
 *   EXPIRY_INTERVALS heartbeat intervals (filtered on every read, pruned by an alarm);
 * - cold-start waiters: a request for a model no runner holds parks here until one registers or it times out;
 * - the gateway's counters (SQLite), flushed to it in batches by every isolate.
 * It is deliberately NOT on the per-request path: isolates route from a cached snapshot (runner-pool.ts) and
 * call here only to refresh it, to wait out a cold start, and to flush counters — one object could not take
 * every request of a global deployment.
 * @module
 */

import { DurableObject } from 'cloudflare:workers'
import {
  DEFAULT_RUNNER_GROUP,
  type MetricFamily,
  type RegistryAck,
  type RunnerLoad,
  type RunnerRegistration,
} from '@twinserve/shared'
import { loadConfig } from '../config.ts'
import { type GaugeValue, type MetricsBatch, MetricsStore } from '../metrics/metrics-store.ts'
import { log, setLogLevel } from '../util/log.ts'
import {
  type CatalogEntry,
  type ColdStartResult,
  EXPIRY_INTERVALS,
  holdsModel,
  type RegistrySnapshot,
  type RunnerRecord,
} from './registry-snapshot.ts'

/** Versions kept per catalog entry (the newest). */
const MAX_CATALOG_VERSIONS = 8

interface RunnerRow extends Record<string, SqlStorageValue> {
  runner_id: string
  url: string
  provider: string
  models: string
  load: string
  draining: number
  runner_group: string
  registered_at: number
  last_seen: number
}

const toRecord = (r: RunnerRow): RunnerRecord => ({
  runner_id: r.runner_id,
  url: r.url,
  provider: r.provider === 'cuda' ? 'cuda' : 'cpu',
  models: JSON.parse(r.models) as RunnerRecord['models'],
  load: JSON.parse(r.load) as RunnerLoad,
  draining: r.draining === 1,
  group: r.runner_group,
  registered_at: r.registered_at,
  last_seen: r.last_seen,
})

interface Waiter {
  model: string
  wake: () => void
}

export class RunnerRegistry extends DurableObject<Env> {
  private readonly sql: SqlStorage
  private readonly metrics: MetricsStore
  private readonly waiters = new Set<Waiter>()

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env)
    this.sql = ctx.storage.sql
    this.sql.exec(`CREATE TABLE IF NOT EXISTS runners (
      runner_id TEXT PRIMARY KEY, url TEXT NOT NULL, provider TEXT NOT NULL, models TEXT NOT NULL,
      load TEXT NOT NULL, draining INTEGER NOT NULL, registered_at INTEGER NOT NULL, last_seen INTEGER NOT NULL)`)
    // Runner groups (issue #19) came after the table: an object created before them gains the column here.
    const columns = this.sql.exec<{ name: string }>('PRAGMA table_info(runners)').toArray()
    if (!columns.some((col) => col.name === 'runner_group'))
      this.sql.exec(
        `ALTER TABLE runners ADD COLUMN runner_group TEXT NOT NULL DEFAULT '${DEFAULT_RUNNER_GROUP}'`,
      )
    // The catalog: every model a runner has announced, kept after its runners leave, so that a request for a
    // model that comes back (scale to zero) waits for a cold start while a name nobody serves is a 404 at once.
    this.sql.exec(`CREATE TABLE IF NOT EXISTS catalog (
      name TEXT PRIMARY KEY, versions TEXT NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL)`)
    this.metrics = new MetricsStore(this.sql)
    setLogLevel(loadConfig(env).LOG_LEVEL)
  }

  private get heartbeatMs(): number {
    return loadConfig(this.env).HEARTBEAT_INTERVAL_MS
  }

  /** Deletes runners silent for too long; returns the live ones. */
  private liveRunners(now: number): RunnerRecord[] {
    const cutoff = now - EXPIRY_INTERVALS * this.heartbeatMs
    const expired = this.sql
      .exec<{ runner_id: string }>(
        'DELETE FROM runners WHERE last_seen < ? RETURNING runner_id',
        cutoff,
      )
      .toArray()
    for (const { runner_id } of expired) this.event('expire', runner_id)
    return this.sql
      .exec<RunnerRow>('SELECT * FROM runners ORDER BY runner_id')
      .toArray()
      .map(toRecord)
  }

  private event(event: 'register' | 'heartbeat' | 'deregister' | 'expire', runnerId: string): void {
    this.metrics.inc('twinserve_gateway_runner_events_total', { event })
    if (event !== 'heartbeat') log('info', `runner_${event}`, { runner_id: runnerId })
  }

  private async scheduleExpiryAlarm(): Promise<void> {
    const row = this.sql
      .exec<{ oldest: number | null }>('SELECT MIN(last_seen) AS oldest FROM runners')
      .one()
    if (row.oldest === null) return
    const due = row.oldest + EXPIRY_INTERVALS * this.heartbeatMs + 1
    const current = await this.ctx.storage.getAlarm()
    if (current === null || current > due) await this.ctx.storage.setAlarm(due)
  }

  /** Register and heartbeat are the same upsert (the body is the runner's full state, so both are idempotent). */
  async register(reg: RunnerRegistration, kind: 'register' | 'heartbeat'): Promise<RegistryAck> {
    const now = Date.now()
    const known =
      this.sql.exec('SELECT 1 FROM runners WHERE runner_id = ?', reg.runner_id).toArray().length > 0
    this.sql.exec(
      `INSERT INTO runners (runner_id, url, provider, models, load, draining, runner_group, registered_at,
         last_seen)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (runner_id) DO UPDATE SET url = excluded.url, provider = excluded.provider,
         models = excluded.models, load = excluded.load, draining = excluded.draining,
         runner_group = excluded.runner_group, last_seen = excluded.last_seen`,
      reg.runner_id,
      reg.url,
      reg.provider,
      JSON.stringify(reg.models),
      JSON.stringify(reg.load),
      reg.draining ? 1 : 0,
      reg.group ?? DEFAULT_RUNNER_GROUP,
      now,
      now,
    )
    this.announce(reg, now)
    // A heartbeat from an unknown runner (expired, or a gateway that lost state) is a registration.
    this.event(known ? kind : 'register', reg.runner_id)
    if (!known || kind === 'register')
      log('info', 'runner_joined', {
        runner_id: reg.runner_id,
        url: reg.url,
        provider: reg.provider,
        models: reg.models.map((m) => m.name).join(','),
      })
    const record = toRecordFromReg(reg, now)
    for (const w of this.waiters) if (holdsModel(record, w.model)) w.wake()
    await this.scheduleExpiryAlarm()
    return { ok: true, heartbeat_interval_ms: this.heartbeatMs }
  }

  /** Adds the registration's models (and versions) to the catalog. */
  private announce(reg: RunnerRegistration, now: number): void {
    for (const m of reg.models) {
      const row = this.sql
        .exec<{ versions: string }>('SELECT versions FROM catalog WHERE name = ?', m.name)
        .toArray()[0]
      const versions = row ? (JSON.parse(row.versions) as string[]) : []
      const next = m.version
        ? [m.version, ...versions.filter((v) => v !== m.version)].slice(0, MAX_CATALOG_VERSIONS)
        : versions
      this.sql.exec(
        `INSERT INTO catalog (name, versions, first_seen, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET versions = excluded.versions, last_seen = excluded.last_seen`,
        m.name,
        JSON.stringify(next),
        now,
        now,
      )
    }
  }

  private catalog(): CatalogEntry[] {
    return this.sql
      .exec<{ name: string; versions: string; first_seen: number; last_seen: number }>(
        'SELECT * FROM catalog ORDER BY name',
      )
      .toArray()
      .map((r) => ({ ...r, versions: JSON.parse(r.versions) as string[] }))
  }

  private isKnown(model: string): boolean {
    return this.sql.exec('SELECT 1 FROM catalog WHERE name = ?', model).toArray().length > 0
  }

  async deregister(runnerId: string): Promise<RegistryAck> {
    const gone = this.sql
      .exec<{ runner_id: string }>(
        'DELETE FROM runners WHERE runner_id = ? RETURNING runner_id',
        runnerId,
      )
      .toArray()
    if (gone.length > 0) this.event('deregister', runnerId)
    return { ok: true, heartbeat_interval_ms: this.heartbeatMs }
  }

  override async alarm(): Promise<void> {
    this.liveRunners(Date.now())
    await this.scheduleExpiryAlarm()
  }

  async snapshot(): Promise<RegistrySnapshot> {
    return {
      runners: this.liveRunners(Date.now()),
      heartbeat_interval_ms: this.heartbeatMs,
      catalog: this.catalog(),
    }
  }

  /**
   * Returns as soon as a live runner holds `model` (at once if one does), or after `wait_ms`; with the
   * snapshot at that moment. This is the cold-start wait: the request is held here, not polled.
   */
  async waitForModel(model: string, wait_ms: number): Promise<ColdStartResult> {
    const started = Date.now()
    let cold = false
    for (;;) {
      const now = Date.now()
      const snapshot = {
        runners: this.liveRunners(now),
        heartbeat_interval_ms: this.heartbeatMs,
        catalog: this.catalog(),
      }
      const known = this.isKnown(model)
      const remaining = started + wait_ms - now
      if (!known || snapshot.runners.some((r) => holdsModel(r, model)) || remaining <= 0)
        return { snapshot, cold, waited_ms: now - started, known }
      cold = true
      await new Promise<void>((resolve) => {
        const waiter: Waiter = {
          model,
          wake: () => {
            clearTimeout(timer)
            this.waiters.delete(waiter)
            resolve()
          },
        }
        const timer = setTimeout(waiter.wake, remaining)
        this.waiters.add(waiter)
      })
    }
  }

  /** Adds one isolate's batched counters. */
  async record(batch: MetricsBatch): Promise<void> {
    this.metrics.apply(batch)
  }

  /** All metric families; `local` are gauges only the calling isolate knows (its breakers, in-flight). */
  async metricFamilies(local: GaugeValue[]): Promise<MetricFamily[]> {
    const runners = this.liveRunners(Date.now())
    const waiting = new Map<string, number>()
    for (const w of this.waiters) waiting.set(w.model, (waiting.get(w.model) ?? 0) + 1)
    const count = (pred: (r: RunnerRecord) => boolean) => runners.filter(pred).length
    const ready = (r: RunnerRecord) => r.models.some((m) => m.ready)
    const gauges: GaugeValue[] = [
      {
        name: 'twinserve_gateway_runners',
        labels: { state: 'ready' },
        value: count((r) => !r.draining && ready(r)),
      },
      {
        name: 'twinserve_gateway_runners',
        labels: { state: 'loading' },
        value: count((r) => !r.draining && !ready(r)),
      },
      {
        name: 'twinserve_gateway_runners',
        labels: { state: 'draining' },
        value: count((r) => r.draining),
      },
      ...[...waiting].map(
        ([model, n]): GaugeValue => ({
          name: 'twinserve_gateway_cold_start_waiting',
          labels: { model },
          value: n,
        }),
      ),
      ...runners.flatMap((r) =>
        r.models.flatMap((m): GaugeValue[] =>
          m.routing_drift === undefined
            ? []
            : [
                {
                  name: 'twinserve_gateway_routing_drift',
                  labels: { model: m.name, runner: r.runner_id },
                  value: m.routing_drift,
                },
              ],
        ),
      ),
      ...local,
    ]
    return this.metrics.families(gauges)
  }
}

function toRecordFromReg(reg: RunnerRegistration, now: number): RunnerRecord {
  return {
    runner_id: reg.runner_id,
    url: reg.url,
    provider: reg.provider,
    models: reg.models,
    load: reg.load,
    draining: reg.draining,
    group: reg.group ?? DEFAULT_RUNNER_GROUP,
    registered_at: now,
    last_seen: now,
  }
}
