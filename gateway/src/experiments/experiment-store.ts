/**
 * Experiments and their arms in D1 (gateway/migrations/0002_experiments.sql): create, read, start, stop,
 * re-weight, append arms, stop one arm. Status moves one way: draft → running → stopped.
 * @module
 */
import {
  AppError,
  type Arm,
  type ArmConfig,
  BanditConfigSchema,
  type CreateExperimentRequest,
  type Experiment,
  GuardrailsSchema,
  ParametersSchema,
  StatisticsConfigSchema,
} from '@twinserve/shared'
import { z } from 'zod'
import { where } from '../util/d1-where.ts'
import { randomHex } from '../util/hex.ts'
import {
  type Allocation,
  allocationCounts,
  bucketCounts,
  initialAllocation,
  reallocate,
} from './allocation.ts'

/** An experiment as the gateway works with it: the public shape plus the bucket allocation. */
export interface StoredExperiment extends Experiment {
  allocation: Allocation
}

interface ExperimentRow {
  id: string
  name: string
  model: string
  unit: string
  mode: string
  status: string
  salt: string
  config: string
  allocation: string
  created_at: string
  started_at: string | null
  stopped_at: string | null
  stop_reason: string | null
}

interface ArmRow {
  experiment_id: string
  position: number
  name: string
  weight: number
  is_control: number
  parameters: string
  description: string | null
  status: string
  stop_reason: string | null
  stopped_at: string | null
}

// Rows are ours, but parse the JSON columns anyway: a hand-edited row must fail loudly, not half-work.
const ConfigColumn = z.object({
  guardrails: GuardrailsSchema,
  statistics: StatisticsConfigSchema,
  bandit: BanditConfigSchema,
  prediction_output: z.string().nullable(),
})
const AllocationColumn = z.array(z.tuple([z.number().int(), z.number().int(), z.number().int()]))
const UnitColumn = z.enum(['api_key', 'user_id'])
const ModeColumn = z.enum(['fixed', 'thompson'])
const StatusColumn = z.enum(['draft', 'running', 'stopped'])
const ArmStatusColumn = z.enum(['active', 'stopped'])

function toExperiment(row: ExperimentRow, arms: ArmRow[]): StoredExperiment {
  const config = ConfigColumn.parse(JSON.parse(row.config))
  const allocation = AllocationColumn.parse(JSON.parse(row.allocation))
  const sorted = [...arms].sort((a, b) => a.position - b.position)
  const counts = allocationCounts(allocation, sorted.length)
  return {
    id: row.id,
    name: row.name,
    model: row.model,
    unit: UnitColumn.parse(row.unit),
    mode: ModeColumn.parse(row.mode),
    status: StatusColumn.parse(row.status),
    salt: row.salt,
    arms: sorted.map(
      (a, i): Arm => ({
        name: a.name,
        weight: a.weight,
        control: a.is_control === 1,
        parameters: ParametersSchema.parse(JSON.parse(a.parameters)),
        description: a.description,
        status: ArmStatusColumn.parse(a.status),
        stop_reason: a.stop_reason,
        stopped_at: a.stopped_at,
        buckets: counts[i] ?? 0,
      }),
    ),
    ...config,
    created_at: row.created_at,
    started_at: row.started_at,
    stopped_at: row.stopped_at,
    stop_reason: row.stop_reason,
    allocation,
  }
}

/** The public shape (no allocation). */
export function publicExperiment(e: StoredExperiment): Experiment {
  const { allocation: _allocation, ...rest } = e
  return rest
}

function armInsert(db: D1Database, experimentId: string, arm: ArmConfig, position: number) {
  return db
    .prepare(
      `INSERT INTO experiment_arms (experiment_id, position, name, weight, is_control, parameters, description)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      experimentId,
      position,
      arm.name,
      arm.weight,
      arm.control ? 1 : 0,
      JSON.stringify(arm.parameters),
      arm.description ?? null,
    )
}

export async function createExperiment(
  db: D1Database,
  req: CreateExperimentRequest,
): Promise<StoredExperiment> {
  const id = `exp_${randomHex(8)}`
  const salt = randomHex(8)
  const allocation = initialAllocation(bucketCounts(req.arms.map((a) => a.weight)))
  const config = {
    guardrails: req.guardrails,
    statistics: req.statistics,
    bandit: req.bandit,
    prediction_output: req.prediction_output ?? null,
  }
  await db.batch([
    db
      .prepare(
        `INSERT INTO experiments (id, name, model, unit, mode, status, salt, config, allocation, created_at)
         VALUES (?, ?, ?, ?, ?, 'draft', ?, ?, ?, ?)`,
      )
      .bind(
        id,
        req.name,
        req.model,
        req.unit,
        req.mode,
        salt,
        JSON.stringify(config),
        JSON.stringify(allocation),
        new Date().toISOString(),
      ),
    ...req.arms.map((a, i) => armInsert(db, id, a, i)),
  ])
  return requireExperiment(db, id)
}

async function armsOf(db: D1Database, ids: string[]): Promise<Map<string, ArmRow[]>> {
  const out = new Map<string, ArmRow[]>()
  if (ids.length === 0) return out
  const { results } = await db
    .prepare(
      `SELECT * FROM experiment_arms WHERE experiment_id IN (${ids.map(() => '?').join(',')})`,
    )
    .bind(...ids)
    .all<ArmRow>()
  for (const r of results) out.set(r.experiment_id, [...(out.get(r.experiment_id) ?? []), r])
  return out
}

export async function getExperiment(
  db: D1Database,
  id: string,
): Promise<StoredExperiment | undefined> {
  const [exp, arms] = await db.batch<ExperimentRow | ArmRow>([
    db.prepare('SELECT * FROM experiments WHERE id = ?').bind(id),
    db.prepare('SELECT * FROM experiment_arms WHERE experiment_id = ?').bind(id),
  ])
  const row = exp?.results[0] as ExperimentRow | undefined
  return row ? toExperiment(row, (arms?.results ?? []) as ArmRow[]) : undefined
}

export async function requireExperiment(db: D1Database, id: string): Promise<StoredExperiment> {
  const e = await getExperiment(db, id)
  if (!e) throw new AppError('NOT_FOUND', `no experiment '${id}'`)
  return e
}

export async function listExperiments(
  db: D1Database,
  filter: { model?: string | undefined; status?: string | undefined },
): Promise<StoredExperiment[]> {
  const clause = where({ model: filter.model, status: filter.status })
  const { results } = await db
    .prepare(`SELECT * FROM experiments ${clause.sql} ORDER BY created_at DESC, id`)
    .bind(...clause.binds)
    .all<ExperimentRow>()
  const arms = await armsOf(
    db,
    results.map((r) => r.id),
  )
  return results.map((r) => toExperiment(r, arms.get(r.id) ?? []))
}

/** The running experiment on `model`, if any (at most one: a unique index sees to it). */
export async function runningExperiment(
  db: D1Database,
  model: string,
): Promise<StoredExperiment | undefined> {
  const row = await db
    .prepare(`SELECT * FROM experiments WHERE model = ? AND status = 'running'`)
    .bind(model)
    .first<ExperimentRow>()
  if (!row) return undefined
  return toExperiment(row, (await armsOf(db, [row.id])).get(row.id) ?? [])
}

export async function startExperiment(db: D1Database, id: string): Promise<StoredExperiment> {
  const e = await requireExperiment(db, id)
  if (e.status === 'running') return e
  if (e.status === 'stopped')
    throw new AppError(
      'INVALID_REQUEST',
      `experiment '${id}' was stopped; its data is final — create a new experiment to run again`,
    )
  try {
    await db
      .prepare(`UPDATE experiments SET status = 'running', started_at = ? WHERE id = ?`)
      .bind(new Date().toISOString(), id)
      .run()
  } catch (err) {
    if (/UNIQUE/i.test(String(err))) {
      const other = await runningExperiment(db, e.model)
      throw new AppError(
        'INVALID_REQUEST',
        `model '${e.model}' already has a running experiment ('${other?.id ?? 'unknown'}'); stop it first`,
      )
    }
    throw err
  }
  return requireExperiment(db, id)
}

export async function stopExperiment(
  db: D1Database,
  id: string,
  reason: string,
): Promise<StoredExperiment> {
  const e = await requireExperiment(db, id)
  if (e.status === 'stopped') return e
  await db
    .prepare(
      `UPDATE experiments SET status = 'stopped', stopped_at = ?, stop_reason = ? WHERE id = ? AND status != 'stopped'`,
    )
    .bind(new Date().toISOString(), reason, id)
    .run()
  return requireExperiment(db, id)
}

function checkChangeable(e: StoredExperiment, what: string): void {
  if (e.status === 'stopped')
    throw new AppError('INVALID_REQUEST', `experiment '${e.id}' is stopped; ${what} is final`)
  if (e.mode === 'thompson' && e.status === 'running')
    throw new AppError(
      'INVALID_REQUEST',
      `experiment '${e.id}' is a running thompson experiment: the bandit sets its split`,
    )
}

function checkTotal(weights: number[]): void {
  const total = weights.reduce((s, w) => s + w, 0)
  if (total > 100 + 1e-9)
    throw new AppError('INVALID_REQUEST', `weights would add up to ${total}%, more than 100%`)
}

/**
 * New weights for some arms. Units stay where they are unless their arm's share shrinks (allocation.ts).
 */
export async function updateWeights(
  db: D1Database,
  id: string,
  weights: Record<string, number>,
): Promise<StoredExperiment> {
  const e = await requireExperiment(db, id)
  checkChangeable(e, 'its split')
  const names = new Set(e.arms.map((a) => a.name))
  const unknown = Object.keys(weights).filter((n) => !names.has(n))
  if (unknown.length > 0)
    throw new AppError(
      'INVALID_REQUEST',
      `weights: no arm ${unknown.map((n) => `'${n}'`).join(', ')} in experiment '${id}' (arms: ${[...names].join(', ')})`,
    )
  const next = e.arms.map((a) => weights[a.name] ?? a.weight)
  checkTotal(next)
  const allocation = reallocate(e.allocation, bucketCounts(next))
  await db.batch([
    db
      .prepare('UPDATE experiments SET allocation = ? WHERE id = ?')
      .bind(JSON.stringify(allocation), id),
    ...e.arms.map((a, i) =>
      db
        .prepare('UPDATE experiment_arms SET weight = ? WHERE experiment_id = ? AND name = ?')
        .bind(next[i] ?? a.weight, id, a.name),
    ),
  ])
  return requireExperiment(db, id)
}

/** Appends an arm (never the control); existing units keep their arms unless the new one needs their buckets. */
export async function addArm(
  db: D1Database,
  id: string,
  arm: ArmConfig,
): Promise<StoredExperiment> {
  const e = await requireExperiment(db, id)
  checkChangeable(e, 'its set of arms')
  if (arm.control)
    throw new AppError(
      'INVALID_REQUEST',
      `arm '${arm.name}': an experiment has one control, fixed at creation`,
    )
  if (e.arms.some((a) => a.name === arm.name))
    throw new AppError('INVALID_REQUEST', `experiment '${id}' already has an arm '${arm.name}'`)
  const next = [...e.arms.map((a) => a.weight), arm.weight]
  checkTotal(next)
  const allocation = reallocate(e.allocation, bucketCounts(next))
  await db.batch([
    armInsert(db, id, arm, e.arms.length),
    db
      .prepare('UPDATE experiments SET allocation = ? WHERE id = ?')
      .bind(JSON.stringify(allocation), id),
  ])
  return requireExperiment(db, id)
}

/** Stops one arm (a guardrail); true when this call stopped it (false: it was already stopped). */
export async function stopArm(
  db: D1Database,
  id: string,
  arm: string,
  reason: string,
): Promise<boolean> {
  const res = await db
    .prepare(
      `UPDATE experiment_arms SET status = 'stopped', stop_reason = ?, stopped_at = ?
       WHERE experiment_id = ? AND name = ? AND status = 'active'`,
    )
    .bind(reason, new Date().toISOString(), id, arm)
    .run()
  return (res.meta.changes ?? 0) > 0
}
