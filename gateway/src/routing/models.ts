/**
 * The V2 model endpoints, mounted at /v2/models, for keys with the `infer` scope that cover the model. Metadata
 * and inference are proxied to a runner (routing, failover, cold-start wait); model readiness is answered from
 * the registry.
 * @module
 */
import {
  InferenceResponseSchema,
  ModelMetadataSchema,
  parseMergeControls,
  splitRequestParameters,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { signingSecret } from '../config.ts'
import { serveWithExperiment } from '../experiments/infer-hook.ts'
import { guard } from '../guard.ts'
import { readInferBody } from '../http/infer-request-body.ts'
import { requestDeadline } from '../http/request-deadline.ts'
import type { RouteLabel } from '../http/request-log-entry.ts'
import { modelParam } from '../http/request-params.ts'
import { registryStub } from './registry-stub.ts'
import { routeRequest } from './route-request.ts'
import { routingSnapshot, runnerPool } from './runner-pool.ts'

/** An `infer` key that covers the `:model`, rate-limited, counted as `countAs`. */
const modelAccess = (countAs: RouteLabel) =>
  guard({ access: 'key', scope: 'infer', modelParam: 'model', countAs, rateLimit: true })

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
    tenant: c.get('principal').tenant,
    deadlineMs,
    clientSignal: c.req.raw.signal,
    waitUntil: waitUntilOf(c),
  }
}

/** The execution context's waitUntil, or undefined where there is none (a direct app.request in a unit test). */
function waitUntilOf(c: Context<AppEnv>): ((work: Promise<unknown>) => void) | undefined {
  try {
    const ctx = c.executionCtx
    return (work) => ctx.waitUntil(work)
  } catch {
    return undefined
  }
}

export const models = new Hono<AppEnv>()
  .get('/:model/ready', modelAccess('model_ready'), async (c) => {
    const name = modelParam(c)
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const ready = pool.anyReady(snapshot, Date.now(), name)
    return c.json({ name, ready }, ready ? 200 : 503)
  })
  .get('/:model', modelAccess('model_metadata'), async (c) => {
    const model = modelParam(c)
    return routeRequest({
      ...routeBase(c, model, requestDeadline(c, Date.now())),
      method: 'GET',
      path: `/v2/models/${model}`,
      body: '',
      okSchema: ModelMetadataSchema,
    })
  })
  .post('/:model/infer', modelAccess('infer'), async (c) => {
    const arrived = Date.now()
    const model = modelParam(c)
    const deadlineMs = requestDeadline(c, arrived)
    const body = await readInferBody(c, c.get('config').MAX_BODY_BYTES)
    // Merge controls are checked here too, so a misspelt control never costs a runner round trip.
    const { controls } = splitRequestParameters(body.request.parameters)
    parseMergeControls(controls)
    // A running A/B experiment on the model may replace the controls with its arm's (experiments/).
    const input = {
      model,
      text: body.headerText,
      ...(body.tensors ? { tensors: body.tensors } : {}),
      parameters: body.request.parameters === undefined ? undefined : controls,
      arrived,
    }
    return serveWithExperiment(c, input, (forward) =>
      routeRequest({
        ...routeBase(c, model, deadlineMs),
        variant: forward.variant,
        merge: forward.merge,
        method: 'POST',
        path: `/v2/models/${model}/infer`,
        body: forward.body,
        ...(forward.bodyHeaders ? { bodyHeaders: forward.bodyHeaders } : {}),
        okSchema: InferenceResponseSchema,
      }),
    )
  })
