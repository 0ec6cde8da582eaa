/**
 * Exposures (a request served by an arm) are buffered per isolate and written to D1 in one batch at most
 * EXPOSURE_FLUSH_MS after the first of them, kept alive with waitUntil: the request path never waits for D1.
 * A record is added as a promise, because its prediction is read from the response body after the response has
 * left. After each write the isolate re-checks the guardrails of the experiments it wrote for (throttled).
 * An isolate evicted between a response and its flush loses those exposures: they then never count, and
 * feedback for them is refused as unknown.
 * @module
 */
import type { GatewayConfig } from '../config.ts'
import { DeferredFlush } from '../util/deferred-flush.ts'
import { errorFields, log } from '../util/log.ts'
import { checkGuardrailsThrottled } from './guardrails.ts'

export interface ExposureRecord {
  tenant: string
  request_id: string
  experiment_id: string
  arm: string
  unit_id: string
  key_id: string
  model: string
  pinned: boolean
  /** ms since epoch when the request arrived */
  ts: number
  latency_ms: number
  status: number
  runner_id: string | null
  prediction: string[] | null
  /** A generation's completion id as answered (`cmpl-…`), which feedback may name instead of the request id. */
  completion_id: string | null
}

/** Statements per D1 batch. */
const BATCH = 50

let pending: Promise<ExposureRecord>[] = []
/** Inserts taken out of `pending` and not yet in D1: feedback waits for them too (flushExposures). */
const inserting = new Set<Promise<unknown>>()
const deferred = new DeferredFlush('exposure_flush_failed')

export function addExposure(record: Promise<ExposureRecord>): void {
  pending.push(record)
}

async function write(env: Env, config: GatewayConfig): Promise<void> {
  const batch = pending
  pending = []
  if (batch.length === 0) return
  const insert = insertAll(env, batch)
  inserting.add(insert)
  const records = await insert
  inserting.delete(insert)
  if (!records) return
  const experiments = new Set(records.filter((r) => !r.pinned).map((r) => r.experiment_id))
  for (const id of experiments) await checkGuardrailsThrottled(env, config, id)
}

/** The records once they are in D1; undefined when they could not be written (logged; they are dropped). */
async function insertAll(
  env: Env,
  batch: Promise<ExposureRecord>[],
): Promise<ExposureRecord[] | undefined> {
  const db = env.DB
  try {
    const records = await Promise.all(batch)
    for (let i = 0; i < records.length; i += BATCH)
      await db.batch(
        records.slice(i, i + BATCH).map((r) =>
          // A request id the tenant already used keeps its first exposure (request ids are the caller's).
          db
            .prepare(
              `INSERT OR IGNORE INTO exposures (tenant, request_id, experiment_id, arm, unit_id, key_id, model,
                 pinned, ts, latency_ms, status, runner_id, prediction, completion_id)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            )
            .bind(
              r.tenant,
              r.request_id,
              r.experiment_id,
              r.arm,
              r.unit_id,
              r.key_id,
              r.model,
              r.pinned ? 1 : 0,
              r.ts,
              r.latency_ms,
              r.status,
              r.runner_id,
              r.prediction ? JSON.stringify(r.prediction) : null,
              r.completion_id,
            ),
        ),
      )
    return records
  } catch (err) {
    log('warn', 'exposure_write_failed', { exposures: batch.length, ...errorFields(err) })
    return undefined
  }
}

/**
 * Schedules the flush of what is buffered; returns the promise to hand to waitUntil (undefined when a flush
 * is already scheduled: the new record rides along).
 */
export function scheduleExposureFlush(env: Env, config: GatewayConfig): Promise<void> | undefined {
  return deferred.schedule(config.EXPOSURE_FLUSH_MS, () => write(env, config))
}

/**
 * Writes what this isolate has buffered now, and waits for the writes already under way (feedback does, so that
 * it finds an exposure made a moment ago: the timed flush may have taken it out of the buffer just before, and
 * its insert not be in D1 yet).
 */
export async function flushExposures(env: Env, config: GatewayConfig): Promise<void> {
  const underWay = [...inserting]
  try {
    await write(env, config)
  } catch (err) {
    log('warn', 'exposure_flush_failed', errorFields(err))
  }
  await Promise.all(underWay)
}
