/**
 * The experiment admin API (shared/src/schemas/experiments.ts), mounted at /admin/experiments, for keys with the
 * `admin` scope.
 * @module
 */
import {
  ArmConfigSchema,
  CreateExperimentRequestSchema,
  EXPERIMENT_STATUSES,
  ExperimentIdSchema,
  type ExperimentList,
  NameSchema,
  parseJsonText,
  StopExperimentRequestSchema,
  UpdateWeightsRequestSchema,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import { z } from 'zod'
import type { AppEnv } from '../app-env.ts'
import { adminApi } from '../guard.ts'
import { readJsonBody, readJsonText } from '../http/json-body.ts'
import { MAX_ADMIN_BODY_BYTES, pathParam, queryParams } from '../http/request-params.ts'
import { log } from '../util/log.ts'
import { forgetActiveExperiments } from './active-experiments.ts'
import { banditFor } from './bandit.ts'
import {
  addArm,
  createExperiment,
  listExperiments,
  publicExperiment,
  requireExperiment,
  type StoredExperiment,
  startExperiment,
  stopExperiment,
  updateWeights,
} from './experiment-store.ts'
import { experimentResults } from './results.ts'

const ListQuerySchema = z.strictObject({
  model: NameSchema.optional(),
  status: z.enum(EXPERIMENT_STATUSES).optional(),
})

const experimentId = (c: Context<AppEnv>): string => pathParam(c, 'id', ExperimentIdSchema)

/** Logs an admin change and forgets this isolate's cached experiments, so the change applies here at once. */
function changed(c: Context<AppEnv>, event: string, e: StoredExperiment) {
  forgetActiveExperiments()
  log('info', event, {
    request_id: c.get('requestId'),
    by: c.get('principal').key_id,
    experiment_id: e.id,
    model: e.model,
    status: e.status,
  })
  return c.json(publicExperiment(e))
}

export const adminExperiments = new Hono<AppEnv>()
  .post('/', adminApi(), async (c) => {
    const { data } = await readJsonBody(c, CreateExperimentRequestSchema, MAX_ADMIN_BODY_BYTES)
    const e = await createExperiment(c.env.DB, data)
    changed(c, 'experiment_created', e)
    return c.json(publicExperiment(e), 201)
  })
  .get('/', adminApi(), async (c) => {
    const experiments = await listExperiments(c.env.DB, queryParams(c, ListQuerySchema))
    const body: ExperimentList = { experiments: experiments.map(publicExperiment) }
    return c.json(body)
  })
  .get('/:id', adminApi(), async (c) =>
    c.json(publicExperiment(await requireExperiment(c.env.DB, experimentId(c)))),
  )
  .get('/:id/results', adminApi(), async (c) =>
    c.json(await experimentResults(c.env, await requireExperiment(c.env.DB, experimentId(c)))),
  )
  .post('/:id/start', adminApi(), async (c) => {
    const e = await startExperiment(c.env.DB, experimentId(c))
    // Thompson: the bandit object starts from the configured split (idempotent).
    if (e.mode === 'thompson') await banditFor(c.env, e)
    return changed(c, 'experiment_started', e)
  })
  .post('/:id/stop', adminApi(), async (c) => {
    const id = experimentId(c)
    // The body is optional: none (or an empty one, `content-length: 0` without a type) stops without a reason.
    const length = c.req.header('content-length')
    const hasBody =
      c.req.header('content-type') !== undefined ||
      (length !== undefined && length !== '0') ||
      c.req.header('transfer-encoding') !== undefined
    const text = hasBody ? await readJsonText(c, MAX_ADMIN_BODY_BYTES) : ''
    const reason =
      text.trim() === '' ? undefined : parseJsonText(text, StopExperimentRequestSchema).reason
    const e = await stopExperiment(
      c.env.DB,
      id,
      `stopped by ${c.get('principal').key_id}${reason ? `: ${reason}` : ''}`,
    )
    return changed(c, 'experiment_stopped', e)
  })
  .put('/:id/weights', adminApi(), async (c) => {
    const id = experimentId(c)
    const { data } = await readJsonBody(c, UpdateWeightsRequestSchema, MAX_ADMIN_BODY_BYTES)
    return changed(c, 'experiment_weights_changed', await updateWeights(c.env.DB, id, data.weights))
  })
  .post('/:id/arms', adminApi(), async (c) => {
    const id = experimentId(c)
    const { data } = await readJsonBody(c, ArmConfigSchema, MAX_ADMIN_BODY_BYTES)
    const e = await addArm(c.env.DB, id, data)
    changed(c, 'experiment_arm_added', e)
    return c.json(publicExperiment(e), 201)
  })
