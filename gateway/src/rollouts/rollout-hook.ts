/**
 * The inference route's rollout step: for a model with a rollout, the caller's version (sticky, see
 * rollout-assignment.ts), routed only to runners announcing it (in the rollout's group), named in the answer's
 * x-twinserve-model-version, and the outcome recorded for the automatic rollback. A model without a rollout is
 * served exactly as before, and the lookup is cached (active-rollouts.ts): no D1 read per request.
 * @module
 */
import {
  MODEL_VERSION_HEADER,
  type RolloutArm,
  toAppError,
  USER_ID_HEADER,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { servesVersion } from '../routing/registry-snapshot.ts'
import { registryStub } from '../routing/registry-stub.ts'
import { routingSnapshot, runnerPool } from '../routing/runner-pool.ts'
import { errorFields, log } from '../util/log.ts'
import { activeRollout } from './active-rollouts.ts'
import { assignVersion, rolloutUnit } from './rollout-assignment.ts'
import { recordRolloutOutcome } from './rollout-outcomes.ts'
import type { StoredRollout } from './rollout-store.ts'

/** Where a request under a rollout goes. */
export interface VersionRoute {
  version: string
  group?: string
}

interface Choice {
  rollout: StoredRollout
  arm: RolloutArm
  version: string
}

/** The caller's arm; a canary no live runner announces sends the caller to stable (and is not counted). */
async function choose(c: Context<AppEnv>, model: string): Promise<Choice | undefined> {
  let rollout: StoredRollout | undefined
  try {
    rollout = await activeRollout(c.env, c.get('config'), model)
  } catch (err) {
    // A rollout lookup must not take serving down: without it the model is served as without a rollout.
    log('warn', 'rollout_lookup_failed', {
      request_id: c.get('requestId'),
      model,
      ...errorFields(err),
    })
    return undefined
  }
  if (!rollout) return undefined
  const unit = rolloutUnit(c.get('principal').key_id, c.req.header(USER_ID_HEADER))
  const assigned = assignVersion(rollout, unit)
  if (assigned.arm === 'canary') {
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const group = rollout.group ?? undefined
    const live = pool
      .holders(snapshot, model, Date.now())
      .some((r) => servesVersion(r, model, assigned.version, group))
    if (!live) return { rollout, arm: 'stable', version: rollout.stable }
  }
  return { rollout, ...assigned }
}

/**
 * Runs `route` at the caller's version under the model's rollout, or unversioned (`undefined`) without one.
 * `arrived` is when the request arrived (its latency is counted from there).
 */
export async function serveWithRollout(
  c: Context<AppEnv>,
  model: string,
  arrived: number,
  route: (at: VersionRoute | undefined) => Promise<Response>,
): Promise<Response> {
  const choice = await choose(c, model)
  if (!choice) return route(undefined)
  const { rollout, arm, version } = choice
  // Set before routing, so error answers (built by onError from this context) name the version too.
  c.header(MODEL_VERSION_HEADER, version)
  const record = (status: number) => {
    const config = c.get('config')
    const flush = recordRolloutOutcome(c.env, config, {
      model,
      rollout_id: rollout.id,
      arm,
      ts: arrived,
      status,
      latency_ms: Date.now() - arrived,
    })
    if (flush)
      try {
        c.executionCtx.waitUntil(flush)
      } catch {
        // No execution context (a direct app.request in a unit test): the flush runs on its own timer.
      }
  }
  let res: Response
  try {
    res = await route({ version, ...(rollout.group ? { group: rollout.group } : {}) })
  } catch (err) {
    const e = toAppError(err)
    // The caller leaving is nobody's verdict on the version.
    if (e.code !== 'CLIENT_CLOSED') record(e.status)
    throw err
  }
  record(res.status)
  res.headers.set(MODEL_VERSION_HEADER, version)
  return res
}
