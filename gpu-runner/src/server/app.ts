/**
 * The runner's HTTP surface: Open Inference Protocol V2 REST, exactly, plus `/metrics`.
 *
 *   GET  /v2/health/live                → 200 {live: true}
 *   GET  /v2/health/ready               → 200 {ready: true} | 503 {ready: false} (loading or draining)
 *   GET  /v2                            → server metadata (+ `provider`, `models`)
 *   GET  /v2/models/{model}             → model metadata (experts, variants, provider in `parameters`)
 *   GET  /v2/models/{model}/ready       → 200 {name, ready: true} | 503 {name, ready: false}
 *   POST /v2/models/{model}/infer       → inference (merge controls in `parameters`; infer-route.ts)
 *   …/versions/{v}/…                    → 404: models here are unversioned
 *   GET  /metrics                       → Prometheus text
 *
 * Every request except health and metrics (probes and scrapers cannot sign) must carry the gateway's HMAC
 * signature unless the runner runs with `--insecure-local`. Errors are `{error, code, request_id}` with the
 * status of the code in the shared table; every caller mistake is a 4xx. openapi-document.ts describes these
 * routes (its test holds it to `app.routes`).
 * @module
 */
import {
  AppError,
  REQUEST_ID_HEADER,
  readBodyText,
  requestIdFrom,
  type ServerMetadata,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyRequest,
} from '@twinserve/shared'
import { Hono, type MiddlewareHandler } from 'hono'
import { methodNotAllowed } from 'hono/method-not-allowed'
import type { ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { errorResponse, methodNotAllowedResponse } from './error-response.ts'
import { inferHandler } from './infer-route.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

export const SERVER_NAME = 'twinserve-gpu-runner'
export const SERVER_VERSION = '0.1.0'

/** Request id, keep-alive off while draining, the access log (infer logs its own line). */
function useRequestBasics(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  app.use(async function requestId(c, next) {
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER))
    c.set('requestId', id)
    c.header(REQUEST_ID_HEADER, id)
    await next()
  })
  app.use(async function closeWhenDraining(c, next) {
    await next()
    // Keep-alive sockets would hold the server open after the drain; ask clients to reconnect elsewhere.
    if (!deps.ready()) c.header('connection', 'close')
  })
  app.use(async function accessLog(c, next) {
    const started = performance.now()
    await next()
    const path = c.req.path
    const quiet = path.startsWith('/v2/health/') || path === '/metrics'
    const fields = {
      request_id: c.get('requestId'),
      method: c.req.method,
      path,
      status: c.res.status,
      duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
    }
    if (quiet) deps.logger.debug('request', fields)
    else if (!path.endsWith('/infer')) deps.logger.info('request', fields)
  })
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, allowed) => methodNotAllowedResponse(c, allowed, deps.logger),
    }),
  )
}

/** Reads the body (within the size limit) and checks the gateway's signature over it. */
function readAndVerify(deps: AppDeps): MiddlewareHandler<RunnerAppEnv> {
  return async function readAndVerify(c, next) {
    if (c.req.path.startsWith('/v2/health/')) return next()
    c.set(
      'body',
      c.req.method === 'GET' || c.req.method === 'HEAD'
        ? ''
        : await readBodyText(c.req.raw, deps.maxBodyBytes, "the runner's limit"),
    )
    if (deps.signingSecret !== null) {
      const url = new URL(c.req.url)
      const result = await verifyRequest(deps.signingSecret, {
        method: c.req.method,
        path: url.pathname + url.search,
        body: c.get('body'),
        timestampHeader: c.req.header(TIMESTAMP_HEADER),
        signatureHeader: c.req.header(SIGNATURE_HEADER),
      })
      if (!result.ok)
        throw new AppError('UNAUTHENTICATED', `request signature rejected: ${result.reason}`)
    }
    await next()
  }
}

/** Health and metrics stay open: Kubernetes probes and Prometheus cannot sign. */
function unsignedRoutes(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  app.get('/v2/health/live', (c) => c.json({ live: true }))
  app.get('/v2/health/ready', (c) =>
    deps.ready() ? c.json({ ready: true }) : c.json({ ready: false }, 503),
  )
  app.get('/metrics', async (c) => {
    const text = await deps.metrics.registry.metrics()
    return c.body(text, 200, { 'content-type': deps.metrics.registry.contentType })
  })
}

function modelRoutes(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  const { models } = deps
  const modelOf = (name: string): ServedModel => {
    const m = models.get(name)
    if (!m)
      throw new AppError(
        'NOT_FOUND',
        `model '${name}' is not served here; models: ${[...models.keys()].join(', ') || '(none)'}`,
      )
    return m
  }
  const noVersion = (model: string, version: string | undefined) =>
    new AppError(
      'NOT_FOUND',
      `model '${model}' has no version '${version}': models on this runner are unversioned (use /v2/models/${model}/…)`,
    )

  app.get('/v2', (c) => {
    const body: ServerMetadata & Record<string, unknown> = {
      name: SERVER_NAME,
      version: SERVER_VERSION,
      extensions: ['twinserve_merge_controls', 'twinserve_dynamic_batching'],
      provider: deps.provider,
      ...(deps.providerFallbackReason
        ? { provider_fallback_reason: deps.providerFallbackReason }
        : {}),
      models: [...models.keys()],
    }
    return c.json(body)
  })
  app.get('/v2/models/:model', (c) => c.json(modelOf(c.req.param('model')).metadata()))
  app.get('/v2/models/:model/ready', (c) => {
    const m = modelOf(c.req.param('model'))
    const ready = deps.ready()
    return c.json({ name: m.name, ready }, ready ? 200 : 503)
  })
  for (const path of [
    '/v2/models/:model/versions/:version/*',
    '/v2/models/:model/versions/:version',
  ])
    app.all(path, (c) => {
      throw noVersion(modelOf(c.req.param('model') ?? '').name, c.req.param('version'))
    })
  app.post('/v2/models/:model/infer', inferHandler(deps, modelOf))
}

export function createApp(deps: AppDeps): Hono<RunnerAppEnv> {
  const app = new Hono<RunnerAppEnv>()
  useRequestBasics(app, deps)
  unsignedRoutes(app, deps)
  app.use('/v2/*', readAndVerify(deps))
  modelRoutes(app, deps)
  app.notFound((c) =>
    errorResponse(
      c,
      new AppError('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`),
      deps.logger,
    ),
  )
  app.onError((err, c) => errorResponse(c, err, deps.logger))
  return app
}
