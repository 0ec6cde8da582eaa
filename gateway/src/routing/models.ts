/**
 * The V2 model endpoints, mounted at /v2/models, for keys with the `infer` scope that cover the model. Metadata
 * and inference are proxied to a runner (routing, failover, cold-start wait); model readiness is answered from
 * the registry.
 * @module
 */
import {
  ALL_MODELS,
  InferenceResponseSchema,
  InferenceStatisticsSchema,
  isInferenceResponse,
  ModelConfigSchema,
  ModelMetadataSchema,
  parseMergeControls,
  splitRequestParameters,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import type { z } from 'zod'
import type { AppEnv } from '../app-env.ts'
import { serveWithExperiment } from '../experiments/infer-hook.ts'
import { generateHandler } from '../generate/generate-routes.ts'
import { guard } from '../guard.ts'
import { readInferBody } from '../http/infer-request-body.ts'
import { requestDeadline } from '../http/request-deadline.ts'
import type { RouteLabel } from '../http/request-log-entry.ts'
import { modelParam } from '../http/request-params.ts'
import { serveWithRollout, type VersionRoute } from '../rollouts/rollout-hook.ts'
import { registryStub } from './registry-stub.ts'
import { routeBase } from './route-base.ts'
import { routeRequest } from './route-request.ts'
import { routingSnapshot, runnerPool } from './runner-pool.ts'

/** An `infer` key that covers the `:model`, rate-limited, counted as `countAs`. */
const modelAccess = (countAs: RouteLabel) =>
  guard({ access: 'key', scope: 'infer', modelParam: 'model', countAs, rateLimit: true })
/** An `infer` key (routes about every model it covers), rate-limited, counted as `countAs`. */
const keyAccess = (countAs: RouteLabel) =>
  guard({ access: 'key', scope: 'infer', countAs, rateLimit: true })

/** `/versions/{v}` when the route names one (the runner checks it is the package's version). */
function versionPath(c: Context<AppEnv>): string {
  const v = c.req.param('version')
  return v === undefined ? '' : `/versions/${encodeURIComponent(v)}`
}

/** A GET proxied to a runner holding the model (metadata, config, statistics). */
function proxyGet(suffix: string, okSchema: z.ZodType) {
  return (c: Context<AppEnv>) => {
    const model = modelParam(c)
    return routeRequest({
      ...routeBase(c, model, requestDeadline(c, Date.now())),
      method: 'GET',
      path: `/v2/models/${model}${versionPath(c)}${suffix}`,
      body: '',
      okSchema,
    })
  }
}

/** Readiness from the registry: a live runner holds the model (at the version named, when one is). */
async function modelReady(c: Context<AppEnv>): Promise<Response> {
  const name = modelParam(c)
  const version = c.req.param('version')
  const pool = runnerPool(c.get('config'))
  const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
  const now = Date.now()
  const ready =
    version === undefined
      ? pool.anyReady(snapshot, now, name)
      : pool
          .holders(snapshot, name, now)
          .some((r) => r.models.some((m) => m.name === name && m.version === version))
  return c.json({ name, ready }, ready ? 200 : 503)
}

async function infer(c: Context<AppEnv>): Promise<Response> {
  const arrived = Date.now()
  const model = modelParam(c)
  const deadlineMs = requestDeadline(c, arrived)
  const body = await readInferBody(c)
  // Merge controls are checked here too, so a misspelt control never costs a runner round trip. Without any,
  // there is nothing to check (the schema accepts none), and the hot path skips zod.
  const { controls } = splitRequestParameters(body.request.parameters)
  if (Object.keys(controls).length > 0) parseMergeControls(controls)
  // A running A/B experiment on the model may replace the controls with its arm's (experiments/).
  const input = {
    model,
    text: body.headerText,
    ...(body.tensors ? { tensors: body.tensors } : {}),
    parameters: body.request.parameters === undefined ? undefined : controls,
    arrived,
  }
  const serve = (at: VersionRoute | undefined) =>
    serveWithExperiment(c, input, (forward) =>
      routeRequest({
        ...routeBase(c, model, deadlineMs),
        variant: forward.variant,
        merge: forward.merge,
        method: 'POST',
        path: `/v2/models/${model}${at ? `/versions/${encodeURIComponent(at.version)}` : versionPath(c)}/infer`,
        ...(at ? { version: at.version, ...(at.group ? { group: at.group } : {}) } : {}),
        body: forward.body,
        ...(forward.bodyHeaders ? { bodyHeaders: forward.bodyHeaders } : {}),
        okSchema: InferenceResponseSchema,
        okCheck: isInferenceResponse,
      }),
    )
  // A request naming its version (`/versions/{v}/infer`) gets that one; otherwise the model's rollout, if it
  // has one, picks the version (rollouts/).
  if (c.req.param('version') !== undefined) return serve(undefined)
  return serveWithRollout(c, model, arrived, serve)
}

const covers = (c: Context<AppEnv>, model: string) => {
  const granted = c.get('principal').models
  return granted.includes(ALL_MODELS) || granted.includes(model)
}

/** Routes served for a model, unversioned (`/:model/…`) and at a version (`/:model/versions/:version/…`). */
function modelRoutes(base: '/:model' | '/:model/versions/:version') {
  return new Hono<AppEnv>()
    .get(`${base}/ready`, modelAccess('model_ready'), modelReady)
    .get(`${base}/config`, modelAccess('model_metadata'), proxyGet('/config', ModelConfigSchema))
    .get(
      `${base}/stats`,
      modelAccess('model_metadata'),
      proxyGet('/stats', InferenceStatisticsSchema),
    )
    .post(`${base}/infer`, modelAccess('infer'), infer)
    .post(`${base}/generate`, modelAccess('generate'), generateHandler(false))
    .post(`${base}/generate_stream`, modelAccess('generate'), generateHandler(true))
    .get(base, modelAccess('model_metadata'), proxyGet('', ModelMetadataSchema))
}

export const models = new Hono<AppEnv>()
  // Triton's statistics of every model (`GET /v2/models/stats`): each model the key covers, from one of its
  // runners, in one list. Registered before `/:model` so that `stats` is not taken for a model name.
  .get('/stats', keyAccess('model_metadata'), async (c) => {
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const now = Date.now()
    const names = snapshot.catalog
      .map((m) => m.name)
      .filter((m) => covers(c, m) && pool.holders(snapshot, m, now).length > 0)
    const model_stats = []
    for (const name of names) {
      const res = await routeRequest({
        ...routeBase(c, name, requestDeadline(c, Date.now())),
        method: 'GET',
        path: `/v2/models/${name}/stats`,
        body: '',
        okSchema: InferenceStatisticsSchema,
      })
      if (res.ok) model_stats.push(...InferenceStatisticsSchema.parse(await res.json()).model_stats)
    }
    return c.json({ model_stats })
  })
  .route('/', modelRoutes('/:model/versions/:version'))
  .route('/', modelRoutes('/:model'))

/**
 * The repository extension's index at the gateway (`POST /v2/repository/index`, tritonclient's
 * `get_model_repository_index()`): the catalog's models the key covers, each at its newest announced version,
 * READY while a live runner holds it, else UNAVAILABLE (scaled to zero: a request waits for a cold start).
 */
export const repository = new Hono<AppEnv>().post(
  '/index',
  keyAccess('model_metadata'),
  async (c) => {
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const now = Date.now()
    return c.json(
      snapshot.catalog
        .filter((m) => covers(c, m.name))
        .map((m) => ({
          name: m.name,
          ...(m.versions[0] ? { version: m.versions[0] } : {}),
          state: pool.anyReady(snapshot, now, m.name) ? 'READY' : 'UNAVAILABLE',
        })),
    )
  },
)
