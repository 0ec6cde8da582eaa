/**
 * The rollout admin API (shared/src/schemas/rollouts.ts), for keys with the `admin` scope: mounted at
 * /admin/models (`/{m}/rollout`, `…/promote`, `…/rollback`) and /admin/rollouts (all of them, for the dashboard).
 * @module
 */
import {
  AppError,
  type RolloutList,
  type SetRolloutRequest,
  SetRolloutRequestSchema,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { adminApi } from '../guard.ts'
import { readJsonBody } from '../http/json-body.ts'
import { MAX_ADMIN_BODY_BYTES, modelParam } from '../http/request-params.ts'
import { registryStub } from '../routing/registry-stub.ts'
import { log } from '../util/log.ts'
import { forgetRollouts } from './active-rollouts.ts'
import { rolloutReport } from './rollout-report.ts'
import {
  listRollouts,
  promote,
  requireRollout,
  rollBack,
  type StoredRollout,
  setRollout,
} from './rollout-store.ts'

/** Logs an admin change and forgets this isolate's cached rollouts, so that it applies here at once. */
async function changed(c: Context<AppEnv>, event: string, r: StoredRollout) {
  forgetRollouts()
  log('info', event, {
    request_id: c.get('requestId'),
    by: c.get('principal').key_id,
    model: r.model,
    rollout_id: r.id,
    stable: r.stable,
    canary: r.canary,
    canary_percent: r.canary_percent,
    state: r.state,
  })
  return c.json(await rolloutReport(c.env.DB, r))
}

/**
 * The stable version must be one a runner has announced for the model (the registry's catalog): a mistyped one
 * would route every request of the model to no runner. The canary may be brought up after the rollout is set
 * (until then its share is served by stable).
 */
async function checkStable(c: Context<AppEnv>, model: string, req: SetRolloutRequest) {
  const { catalog } = await registryStub(c.env).snapshot()
  const entry = catalog.find((m) => m.name === model)
  if (!entry)
    throw new AppError(
      'NOT_FOUND',
      `model '${model}' is not served here: no runner serves or has served it`,
    )
  if (!entry.versions.includes(req.stable))
    throw new AppError(
      'INVALID_REQUEST',
      `stable: version '${req.stable}' of model '${model}' was never announced by a runner (announced: ${entry.versions.join(', ') || 'none'})`,
    )
}

export const adminRollouts = new Hono<AppEnv>()
  .put('/:model/rollout', adminApi(), async (c) => {
    const model = modelParam(c)
    const { data } = await readJsonBody(c, SetRolloutRequestSchema, MAX_ADMIN_BODY_BYTES)
    await checkStable(c, model, data)
    return changed(c, 'rollout_set', await setRollout(c.env.DB, model, data))
  })
  .get('/:model/rollout', adminApi(), async (c) =>
    c.json(await rolloutReport(c.env.DB, await requireRollout(c.env.DB, modelParam(c)))),
  )
  .post('/:model/rollout/promote', adminApi(), async (c) => {
    const model = modelParam(c)
    const r = await promote(c.env.DB, model, `promoted by ${c.get('principal').key_id}`)
    return changed(c, 'rollout_promoted', r)
  })
  .post('/:model/rollout/rollback', adminApi(), async (c) => {
    const model = modelParam(c)
    const r = await requireRollout(c.env.DB, model)
    // Rolling back what is no longer active changes nothing and says so in the state it answers.
    if (r.state === 'active')
      await rollBack(c.env.DB, model, r.id, `rolled back by ${c.get('principal').key_id}`)
    return changed(c, 'rollout_rolled_back', await requireRollout(c.env.DB, model))
  })

export const rolloutList = new Hono<AppEnv>().get('/', adminApi(), async (c) => {
  const rollouts = await listRollouts(c.env.DB)
  const body: RolloutList = {
    rollouts: await Promise.all(rollouts.map((r) => rolloutReport(c.env.DB, r))),
  }
  return c.json(body)
})
