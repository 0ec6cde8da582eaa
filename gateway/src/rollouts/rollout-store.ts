/**
 * Rollouts in D1 (migration 0005): one row per model, and the outcomes of the requests served under it.
 * @module
 */
import {
  AppError,
  type Guardrails,
  GuardrailsSchema,
  type Rollout,
  type RolloutArm,
  type RolloutArmStats,
  type RolloutState,
  type SetRolloutRequest,
} from '@twinserve/shared'
import { quantileSorted } from '../experiments/statistics/quantile.ts'
import { randomHex } from '../util/hex.ts'

export interface StoredRollout {
  model: string
  id: string
  stable: string
  canary: string | null
  canary_percent: number
  group: string | null
  guardrails: Guardrails
  alpha: number
  state: RolloutState
  reason: string | null
  created_at: string
  updated_at: string
}

interface RolloutRow {
  model: string
  id: string
  stable: string
  canary: string | null
  canary_percent: number
  runner_group: string | null
  config: string
  state: string
  reason: string | null
  created_at: string
  updated_at: string
}

function fromRow(row: RolloutRow): StoredRollout {
  const config = JSON.parse(row.config) as { guardrails: unknown; alpha: number }
  return {
    model: row.model,
    id: row.id,
    stable: row.stable,
    canary: row.canary,
    canary_percent: row.canary_percent,
    group: row.runner_group,
    guardrails: GuardrailsSchema.parse(config.guardrails),
    alpha: config.alpha,
    state: row.state as RolloutState,
    reason: row.reason,
    created_at: row.created_at,
    updated_at: row.updated_at,
  }
}

export async function getRollout(
  db: D1Database,
  model: string,
): Promise<StoredRollout | undefined> {
  const row = await db
    .prepare('SELECT * FROM rollouts WHERE model = ?')
    .bind(model)
    .first<RolloutRow>()
  return row ? fromRow(row) : undefined
}

export async function requireRollout(db: D1Database, model: string): Promise<StoredRollout> {
  const r = await getRollout(db, model)
  if (!r) throw new AppError('NOT_FOUND', `model '${model}' has no rollout (set one with PUT)`)
  return r
}

export async function listRollouts(db: D1Database): Promise<StoredRollout[]> {
  const { results } = await db.prepare('SELECT * FROM rollouts ORDER BY model').all<RolloutRow>()
  return results.map(fromRow)
}

/**
 * Sets the model's rollout. The id (the assignment's salt, the outcomes' key) is kept while stable and canary
 * stay the same versions, so changing only the percentage keeps every unit already on the canary there (its
 * bucket stays under the threshold as that grows); any new version starts a new rollout with fresh counts.
 */
export async function setRollout(
  db: D1Database,
  model: string,
  req: SetRolloutRequest,
): Promise<StoredRollout> {
  const old = await getRollout(db, model)
  const canary = req.canary ?? null
  const same = old !== undefined && old.stable === req.stable && old.canary === canary
  const now = new Date().toISOString()
  const id = same ? old.id : randomHex(8)
  await db
    .prepare(
      `INSERT INTO rollouts (model, id, stable, canary, canary_percent, runner_group, config, state, reason,
         created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'active', NULL, ?, ?)
       ON CONFLICT (model) DO UPDATE SET id = excluded.id, stable = excluded.stable, canary = excluded.canary,
         canary_percent = excluded.canary_percent, runner_group = excluded.runner_group, config = excluded.config,
         state = 'active', reason = NULL,
         created_at = CASE WHEN rollouts.id = excluded.id THEN rollouts.created_at ELSE excluded.created_at END,
         updated_at = excluded.updated_at`,
    )
    .bind(
      model,
      id,
      req.stable,
      canary,
      req.canary_percent,
      req.group ?? null,
      JSON.stringify({ guardrails: req.guardrails, alpha: req.alpha }),
      now,
      now,
    )
    .run()
  return requireRollout(db, model)
}

/**
 * Rolls the canary back: no traffic to it, state rolled_back, `reason` kept. Only an active rollout with the
 * id `id` changes (a guardrail verdict on an older rollout must not undo a newer one); true when it did.
 */
export async function rollBack(
  db: D1Database,
  model: string,
  id: string,
  reason: string,
): Promise<boolean> {
  const res = await db
    .prepare(
      `UPDATE rollouts SET canary_percent = 0, state = 'rolled_back', reason = ?, updated_at = ?
       WHERE model = ? AND id = ? AND state = 'active'`,
    )
    .bind(reason, new Date().toISOString(), model, id)
    .run()
  return res.meta.changes > 0
}

/** Promotes the canary: it becomes the stable version and takes all traffic. */
export async function promote(
  db: D1Database,
  model: string,
  reason: string,
): Promise<StoredRollout> {
  const r = await requireRollout(db, model)
  if (r.state !== 'active' || r.canary === null)
    throw new AppError(
      'INVALID_REQUEST',
      r.canary === null
        ? `model '${model}': the rollout has no canary to promote`
        : `model '${model}': the rollout is ${r.state}, only an active one can be promoted`,
    )
  await db
    .prepare(
      `UPDATE rollouts SET stable = canary, canary = NULL, canary_percent = 0, state = 'promoted', reason = ?,
         updated_at = ? WHERE model = ? AND id = ?`,
    )
    .bind(reason, new Date().toISOString(), model, r.id)
    .run()
  return requireRollout(db, model)
}

export interface OutcomeSample {
  ts: number
  status: number
  latency_ms: number
}

/** The arm's most recent `window` outcomes, oldest first. */
export async function recentOutcomes(
  db: D1Database,
  id: string,
  arm: RolloutArm,
  window: number,
): Promise<OutcomeSample[]> {
  const { results } = await db
    .prepare(
      `SELECT ts, status, latency_ms FROM rollout_outcomes WHERE rollout_id = ? AND arm = ?
       ORDER BY ts DESC LIMIT ?`,
    )
    .bind(id, arm, window)
    .all<OutcomeSample>()
  return results.reverse()
}

/** Counts over all of the rollout's outcomes per arm, the p95 over the arm's guardrail window. */
export async function armStats(
  db: D1Database,
  r: StoredRollout,
  arm: RolloutArm,
  window: readonly OutcomeSample[],
): Promise<RolloutArmStats> {
  const row = await db
    .prepare(
      `SELECT COUNT(*) AS n, SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors, AVG(latency_ms) AS mean
       FROM rollout_outcomes WHERE rollout_id = ? AND arm = ?`,
    )
    .bind(r.id, arm)
    .first<{ n: number; errors: number | null; mean: number | null }>()
  const n = row?.n ?? 0
  const errors = row?.errors ?? 0
  const sorted = window.map((s) => s.latency_ms).sort((a, b) => a - b)
  return {
    version: arm === 'stable' ? r.stable : r.canary,
    requests: n,
    errors,
    error_rate: n > 0 ? errors / n : null,
    mean_latency_ms: row?.mean ?? null,
    p95_latency_ms: sorted.length > 0 ? quantileSorted(sorted, 0.95) : null,
  }
}

export function publicRollout(r: StoredRollout, arms: Rollout['arms'], pValue: number): Rollout {
  return {
    model: r.model,
    id: r.id,
    stable: r.stable,
    canary: r.canary,
    canary_percent: r.canary_percent,
    group: r.group,
    guardrails: r.guardrails,
    alpha: r.alpha,
    state: r.state,
    reason: r.reason,
    arms,
    p_value: pValue,
    created_at: r.created_at,
    updated_at: r.updated_at,
  }
}
