import {
  InferenceRequestSchema,
  InferenceResponseSchema,
  ModelMetadataSchema,
  parseMergeControls,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import { signingSecret } from '../config.ts'
import type { AppEnv } from '../env.ts'
import { serveWithExperiment } from '../experiments/infer-hook.ts'
import { readJsonBody } from '../lib/json-body.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { modelParam, requestDeadline } from '../lib/request-deadline.ts'
import { routeRequest } from '../lib/route-request.ts'
import { routingSnapshot, runnerPool } from '../lib/runner-pool.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'
import { rateLimit } from '../middleware/rate-limit/index.ts'
import { countAs } from '../middleware/request-log/index.ts'

const modelAccess = () => apiKeyAuth({ scope: 'infer', modelParam: 'model' })

/** What every proxied call to a runner for `model` carries from the request context. */
function routeBase(c: Context<AppEnv>, model: string, deadlineMs: number) {
  const config = c.get('config')
  return {
    env: c.env,
    config,
    secret: signingSecret(config),
    requestId: c.get('requestId'),
    requestLog: c.get('requestLog'),
    model,
    deadlineMs,
  }
}

/**
 * The V2 model endpoints, for keys with the `infer` scope that cover the model. Metadata and inference are
 * proxied to a runner (routing, failover, cold-start wait); model readiness is answered from the registry.
 */
export const models = new Hono<AppEnv>()
  .get('/v2/models/:model/ready', countAs('model_ready'), modelAccess(), rateLimit(), async (c) => {
    const name = modelParam(c)
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const ready = pool.anyReady(snapshot, Date.now(), name)
    return c.json({ name, ready }, ready ? 200 : 503)
  })
  .get('/v2/models/:model', countAs('model_metadata'), modelAccess(), rateLimit(), async (c) => {
    const model = modelParam(c)
    return routeRequest({
      ...routeBase(c, model, requestDeadline(c, Date.now())),
      method: 'GET',
      path: `/v2/models/${model}`,
      body: '',
      okSchema: ModelMetadataSchema,
    })
  })
  .post('/v2/models/:model/infer', countAs('infer'), modelAccess(), rateLimit(), async (c) => {
    const arrived = Date.now()
    const model = modelParam(c)
    const deadlineMs = requestDeadline(c, arrived)
    const { text, data } = await readJsonBody(
      c,
      InferenceRequestSchema,
      c.get('config').MAX_BODY_BYTES,
    )
    // Merge controls are checked here too, so a misspelt control never costs a runner round trip.
    parseMergeControls(data.parameters)
    // A running A/B experiment on the model may replace the controls with its arm's (experiments/).
    const input = { model, text, parameters: data.parameters, arrived }
    return serveWithExperiment(c, input, (forward) =>
      routeRequest({
        ...routeBase(c, model, deadlineMs),
        variant: forward.variant,
        method: 'POST',
        path: `/v2/models/${model}/infer`,
        body: forward.body,
        okSchema: InferenceResponseSchema,
      }),
    )
  })
