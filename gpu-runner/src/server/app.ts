/**
 * The runner's HTTP surface: Open Inference Protocol V2 REST, exactly, plus `/metrics`.
 *
 *   GET  /v2/health/live                → 200 {live: true}
 *   GET  /v2/health/ready               → 200 {ready: true} | 503 {ready: false} (loading or draining)
 *   GET  /v2                            → server metadata (+ `provider`, `models`)
 *   GET  /v2/models/{model}             → model metadata (experts, variants, provider in `parameters`)
 *   GET  /v2/models/{model}/ready       → 200 {name, ready: true} | 503 {name, ready: false}
 *   GET  /v2/models/{model}/config      → Triton's model configuration
 *   GET  /v2/models/{model}/stats       → Triton's statistics ({model_stats: […]}; /v2/models/stats for all)
 *   POST /v2/models/{model}/infer       → inference (JSON or binary tensors, merge controls in `parameters`;
 *                                         infer-route.ts)
 *   …/versions/{v}/…                    → the same, when {v} is the package's version (package-version.ts)
 *   POST /v2/models/{model}/generate    → Triton's generate extension, text in and out (generate-routes.ts);
 *   POST /v2/models/{model}/generate_stream  … and as server-sent events (decoder packages, `--generation`)
 *   POST /v2/repository/index           → [{name, version, state}]
 *   POST /v2/repository/models/{m}/load → hot swap: a package as {m}'s new version (repository-routes.ts)
 *   POST /v2/repository/models/{m}/unload
 *   GET  /v1/models, POST /v1/completions, POST /v1/chat/completions → OpenAI-compatible generation
 *                                         (openai-routes.ts), signed like /v2
 *   GET  /metrics                       → Prometheus text
 *
 * Every request except health and metrics (probes and scrapers cannot sign) must carry the gateway's HMAC
 * signature unless the runner runs with `--insecure-local`. Errors are `{error, code, request_id}` with the
 * status of the code in the shared table; every caller mistake is a 4xx. openapi-document.ts describes these
 * routes (its test holds it to `app.routes`).
 * @module
 */
import { createHash } from 'node:crypto'
import {
  AppError,
  bodyMatches,
  REQUEST_ID_HEADER,
  readBodyBytes,
  requestIdFrom,
  type ServerMetadata,
  type SignedClaims,
  type TensorMetadata,
  verifySignedHeaders,
} from '@twinserve/shared'
import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { methodNotAllowed } from 'hono/method-not-allowed'
import type { ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { errorResponse, methodNotAllowedResponse } from './error-response.ts'
import { generateHandler } from './generate-routes.ts'
import { inferHandler } from './infer-route.ts'
import { findModel } from './model-lookup.ts'
import { openaiRoutes } from './openai-routes.ts'
import { repositoryRoutes } from './repository-routes.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

export const SERVER_NAME = 'twinserve-gpu-runner'
export const SERVER_VERSION = '0.1.0'
/** The protocol extensions served, as `GET /v2` lists them (Triton's names, then ours). */
export const SERVER_EXTENSIONS: readonly string[] = [
  'binary_tensor_data',
  'classification',
  'model_configuration',
  'model_repository',
  'statistics',
  'parameters',
  'twinserve_merge_controls',
  'twinserve_dynamic_batching',
  'generate',
]

/** Request id, keep-alive off while draining, the access log (infer logs its own line). */
function useRequestBasics(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  app.use(async function requestId(c, next) {
    const id = requestIdFrom(c.req.header(REQUEST_ID_HEADER))
    c.set('requestId', id)
    c.header(REQUEST_ID_HEADER, id)
    await next()
  })
  app.use(async function closeWhenDone(c, next) {
    await next()
    // Keep-alive sockets would hold the server open after the drain; ask clients to reconnect elsewhere. And a
    // request refused before its body was read closes its connection, so the unread body is never read either.
    if (!deps.ready() || c.get('bodyUnread')) c.header('connection', 'close')
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

/**
 * The gateway's signature, checked from the headers BEFORE a byte of the body is read (issue #16: an unsigned
 * POST announcing 30 MiB used to be read to the end first): signed headers present and right, timestamp fresh,
 * nonce not seen before, announced size within the limit. Then the body streams into a hash, capped in bytes
 * and in time, and must hash to what was signed.
 */
function readAndVerify(deps: AppDeps): MiddlewareHandler<RunnerAppEnv> {
  return async function readAndVerify(c, next) {
    if (c.req.path.startsWith('/v2/health/')) return next()
    c.set('bodyUnread', true)
    let claims: SignedClaims | undefined
    if (deps.signingSecret !== null) {
      const url = new URL(c.req.url)
      const verdict = await verifySignedHeaders(deps.signingSecret, {
        method: c.req.method,
        path: url.pathname + url.search,
        headers: c.req.raw.headers,
      })
      if (!verdict.ok)
        throw new AppError('UNAUTHENTICATED', `request signature rejected: ${verdict.reason}`)
      const { nonce, timestamp } = verdict.claims
      if (!deps.replay.admit(nonce, timestamp, Math.floor(Date.now() / 1000)))
        throw new AppError(
          'UNAUTHENTICATED',
          'request signature rejected: replayed (this nonce was used already)',
        )
      claims = verdict.claims
    }
    const hash = claims ? createHash('sha256') : undefined
    const body =
      c.req.method === 'GET' || c.req.method === 'HEAD'
        ? new Uint8Array(0)
        : await readBodyBytes(c.req.raw, deps.maxBodyBytes, {
            limitName: "the runner's limit",
            timeoutMs: deps.bodyTimeoutMs,
            ...(hash ? { onChunk: (chunk: Uint8Array) => hash.update(chunk) } : {}),
          })
    c.set('bodyUnread', false)
    if (claims && hash && !bodyMatches(claims, hash.digest('hex')))
      throw new AppError(
        'UNAUTHENTICATED',
        'request signature rejected: body does not match its signed hash',
      )
    c.set('body', body)
    c.set('tenant', claims?.tenant ?? '')
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

/** Triton's model configuration (`/config`, what `get_model_config()` reads) for a served model. */
function modelConfig(model: ServedModel, maxBatchSize: number) {
  const meta = model.metadata()
  // Triton lists dims without the batch axis when the model batches (max_batch_size > 0).
  const batched = [...meta.inputs, ...meta.outputs].every((t) => t.shape[0] === -1)
  const tensor = (t: TensorMetadata) => ({
    name: t.name,
    data_type: t.datatype === 'BYTES' ? 'TYPE_STRING' : `TYPE_${t.datatype}`,
    dims: batched ? t.shape.slice(1) : t.shape,
  })
  return {
    name: model.name,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    version_policy: { specific: { versions: [model.version] } },
    max_batch_size: batched ? maxBatchSize : 0,
    input: meta.inputs.map(tensor),
    output: meta.outputs.map(tensor),
    dynamic_batching: {},
  }
}

function modelRoutes(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  const { models } = deps
  const modelOf = (name: string): ServedModel => findModel(models, name)
  /** The model a `/v2/models/{model}[/versions/{version}]/…` path names, at that version. */
  const modelAt = (c: Context<RunnerAppEnv>): ServedModel => {
    const m = modelOf(c.req.param('model') ?? '')
    const version = c.req.param('version')
    if (version !== undefined && version !== m.version)
      throw new AppError(
        'NOT_FOUND',
        `model '${m.name}' has no version '${version}'; its versions are ${m.version}`,
      )
    return m
  }

  app.get('/v2', (c) => {
    const body: ServerMetadata & Record<string, unknown> = {
      name: SERVER_NAME,
      version: SERVER_VERSION,
      extensions: [...SERVER_EXTENSIONS],
      provider: deps.provider,
      ...(deps.providerFallbackReason
        ? { provider_fallback_reason: deps.providerFallbackReason }
        : {}),
      models: [...models.keys()],
    }
    return c.json(body)
  })
  app.get('/v2/models/stats', (c) =>
    c.json({
      model_stats: [...models.values()].map((m) => deps.stats.snapshot(m.name, m.version)),
    }),
  )
  for (const base of ['/v2/models/:model', '/v2/models/:model/versions/:version']) {
    app.get(base, (c) => c.json(modelAt(c).metadata()))
    app.get(`${base}/ready`, (c) => {
      const m = modelAt(c)
      const ready = deps.ready()
      return c.json({ name: m.name, ready }, ready ? 200 : 503)
    })
    app.get(`${base}/config`, (c) => c.json(modelConfig(modelAt(c), deps.maxBatchSize)))
    app.get(`${base}/stats`, (c) => {
      const m = modelAt(c)
      return c.json({ model_stats: [deps.stats.snapshot(m.name, m.version)] })
    })
    app.post(`${base}/infer`, inferHandler(deps, modelOf))
    app.post(`${base}/generate`, generateHandler(deps, false))
    app.post(`${base}/generate_stream`, generateHandler(deps, true))
  }
}

export function createApp(deps: AppDeps): Hono<RunnerAppEnv> {
  const app = new Hono<RunnerAppEnv>()
  useRequestBasics(app, deps)
  unsignedRoutes(app, deps)
  app.use('/v2/*', readAndVerify(deps))
  // The OpenAI-compatible routes are signed exactly like /v2: only the gateway (or --insecure-local) calls them.
  app.use('/v1/*', readAndVerify(deps))
  modelRoutes(app, deps)
  repositoryRoutes(app, deps)
  openaiRoutes(app, deps)
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
