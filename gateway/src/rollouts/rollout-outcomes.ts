/**
 * How each request served under a rollout ended (arm, status, latency), buffered per isolate and written to D1
 * in one batch at most EXPOSURE_FLUSH_MS after the first, kept alive with waitUntil: the request path never
 * waits for D1. After each write the rollouts written for are checked for rollback (throttled).
 * @module
 */
import type { RolloutArm } from '@twinserve/shared'
import type { GatewayConfig } from '../config.ts'
import { DeferredFlush } from '../util/deferred-flush.ts'
import { errorFields, log } from '../util/log.ts'
import { checkRolloutThrottled } from './rollback-check.ts'

export interface RolloutOutcome {
  model: string
  rollout_id: string
  arm: RolloutArm
  /** ms since epoch when the request arrived */
  ts: number
  status: number
  latency_ms: number
}

/** Statements per D1 batch. */
const BATCH = 50
/** Outcomes kept while D1 is unreachable; beyond it the oldest are dropped (they only inform a verdict). */
const MAX_PENDING = 10_000

let pending: RolloutOutcome[] = []
const deferred = new DeferredFlush('rollout_outcome_flush_failed')

async function write(env: Env, config: GatewayConfig): Promise<void> {
  const records = pending
  pending = []
  if (records.length === 0) return
  const db = env.DB
  try {
    for (let i = 0; i < records.length; i += BATCH)
      await db.batch(
        records
          .slice(i, i + BATCH)
          .map((r) =>
            db
              .prepare(
                'INSERT INTO rollout_outcomes (rollout_id, arm, ts, status, latency_ms) VALUES (?, ?, ?, ?, ?)',
              )
              .bind(r.rollout_id, r.arm, r.ts, r.status, r.latency_ms),
          ),
      )
  } catch (err) {
    log('warn', 'rollout_outcome_write_failed', { outcomes: records.length, ...errorFields(err) })
    return
  }
  const rollouts = new Map(records.map((r) => [r.rollout_id, r.model]))
  for (const [id, model] of rollouts) await checkRolloutThrottled(env, config, model, id)
}

/**
 * Buffers `outcome` and returns the flush to hand to waitUntil (undefined when one is already scheduled: the
 * new record rides along).
 */
export function recordRolloutOutcome(
  env: Env,
  config: GatewayConfig,
  outcome: RolloutOutcome,
): Promise<void> | undefined {
  if (pending.length >= MAX_PENDING) pending.shift()
  pending.push(outcome)
  return deferred.schedule(config.EXPOSURE_FLUSH_MS, () => write(env, config))
}
