import {
  AppError,
  ArmConfigSchema,
  CreateExperimentRequestSchema,
  EXPERIMENT_STATUSES,
  ExperimentIdSchema,
  type ExperimentList,
  NameSchema,
  StopExperimentRequestSchema,
  UpdateWeightsRequestSchema,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import { z } from 'zod'
import type { AppEnv } from '../env.ts'
import { forgetActiveExperiments } from '../experiments/active-experiments.ts'
import { banditFor } from '../experiments/bandit.ts'
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
} from '../experiments/experiment-store.ts'
import { experimentResults } from '../experiments/results.ts'
import { describeIssues, parseJsonText, readJsonBody, readJsonText } from '../lib/json-body.ts'
import { log } from '../lib/log.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'
import { rateLimit } from '../middleware/rate-limit/index.ts'
import { countAs } from '../middleware/request-log/index.ts'

const MAX_ADMIN_BODY_BYTES = 64 * 1024

const ListQuerySchema = z.strictObject({
  model: NameSchema.optional(),
  status: z.enum(EXPERIMENT_STATUSES).optional(),
})

function experimentId(c: Context<AppEnv>): string {
  const id = ExperimentIdSchema.safeParse(c.req.param('id'))
  if (!id.success) throw new AppError('INVALID_REQUEST', describeIssues(id.error, 'id'))
  return id.data
}

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

/** The experiment admin API (shared/src/schemas/experiments.ts), for keys with the `admin` scope. */
export const adminExperiments = new Hono<AppEnv>()
  .use('/admin/experiments', countAs('admin'), apiKeyAuth({ scope: 'admin' }), rateLimit())
  .use('/admin/experiments/*', countAs('admin'), apiKeyAuth({ scope: 'admin' }), rateLimit())
  .post('/admin/experiments', async (c) => {
    const { data } = await readJsonBody(c, CreateExperimentRequestSchema, MAX_ADMIN_BODY_BYTES)
    const e = await createExperiment(c.env.DB, data)
    changed(c, 'experiment_created', e)
    return c.json(publicExperiment(e), 201)
  })
  .get('/admin/experiments', async (c) => {
    const query = ListQuerySchema.safeParse(c.req.query())
    if (!query.success) throw new AppError('INVALID_REQUEST', describeIssues(query.error, 'query'))
    const experiments = await listExperiments(c.env.DB, query.data)
    const body: ExperimentList = { experiments: experiments.map(publicExperiment) }
    return c.json(body)
  })
  .get('/admin/experiments/:id', async (c) =>
    c.json(publicExperiment(await requireExperiment(c.env.DB, experimentId(c)))),
  )
  .get('/admin/experiments/:id/results', async (c) =>
    c.json(await experimentResults(c.env, await requireExperiment(c.env.DB, experimentId(c)))),
  )
  .post('/admin/experiments/:id/start', async (c) => {
    const e = await startExperiment(c.env.DB, experimentId(c))
    // Thompson: the bandit object starts from the configured split (idempotent).
    if (e.mode === 'thompson') await banditFor(c.env, e)
    return changed(c, 'experiment_started', e)
  })
  .post('/admin/experiments/:id/stop', async (c) => {
    const id = experimentId(c)
    // The body is optional: none (or an empty one) stops without a reason.
    const hasBody = c.req.header('content-type') !== undefined || c.req.header('content-length')
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
  .put('/admin/experiments/:id/weights', async (c) => {
    const id = experimentId(c)
    const { data } = await readJsonBody(c, UpdateWeightsRequestSchema, MAX_ADMIN_BODY_BYTES)
    return changed(c, 'experiment_weights_changed', await updateWeights(c.env.DB, id, data.weights))
  })
  .post('/admin/experiments/:id/arms', async (c) => {
    const id = experimentId(c)
    const { data } = await readJsonBody(c, ArmConfigSchema, MAX_ADMIN_BODY_BYTES)
    const e = await addArm(c.env.DB, id, data)
    changed(c, 'experiment_arm_added', e)
    return c.json(publicExperiment(e), 201)
  })
