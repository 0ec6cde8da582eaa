/**
 * The runner's HTTP surface: Open Inference Protocol V2 REST, exactly, plus `/metrics`.
 *
 *   GET  /v2/health/live                → 200 {live: true}
 *   GET  /v2/health/ready               → 200 {ready: true} | 503 {ready: false} (loading or draining)
 *   GET  /v2                            → server metadata (+ `provider`, `models`)
 *   GET  /v2/models/{model}             → model metadata (experts, variants, provider in `parameters`)
 *   GET  /v2/models/{model}/ready       → 200 {name, ready: true} | 503 {name, ready: false}
 *   POST /v2/models/{model}/infer       → inference (merge controls in `parameters`)
 *   …/versions/{v}/…                    → 404: models here are unversioned
 *   GET  /metrics                       → Prometheus text
 *
 * Every request except health and metrics (probes and scrapers cannot sign) must carry the gateway's HMAC
 * signature unless the runner runs with `--insecure-local`. Errors are `{error, code, request_id}` with the
 * status of the code in the shared table; every caller mistake is a 4xx.
 * @module
 */
import { randomUUID } from 'node:crypto'
import {
  AppError,
  type ErrorBody,
  InferenceRequestSchema,
  type InferenceResponse,
  readBodyText,
  type ServerMetadata,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  toAppError,
  verifyRequest,
} from '@twinserve/shared'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { PreparedRequest, RunResult, ServedModel } from '../model/served-model.ts'
import { errorFields, type Logger } from './logger.ts'
import type { RunnerMetrics } from './metrics.ts'
import type { Scheduler } from './scheduler.ts'

export const SERVER_NAME = 'twinserve-gpu-runner'
export const SERVER_VERSION = '0.1.0'
/** The gateway says how long it will wait for this attempt (ms from now); the runner never waits longer. */
export const DEADLINE_HEADER = 'x-twinserve-deadline-ms'
export const REQUEST_ID_HEADER = 'x-request-id'

export interface AppDeps {
  models: ReadonlyMap<string, ServedModel>
  scheduler: Scheduler<PreparedRequest, RunResult>
  metrics: RunnerMetrics
  logger: Logger
  provider: 'cuda' | 'cpu'
  /** Why CUDA was not used, when it was asked for. */
  providerFallbackReason?: string
  /** HMAC secret; null accepts unsigned requests (`--insecure-local`). */
  signingSecret: string | null
  maxBodyBytes: number
  requestTimeoutMs: number
  /** Ready to take requests (models loaded, not draining). */
  ready: () => boolean
}

type AppEnv = { Variables: { requestId: string; body: string } }

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/

function describeIssues(error: { issues: { path: PropertyKey[]; message: string }[] }): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.map(String).join('.') : '(body)'}: ${i.message}`)
    .join('; ')
}

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { models, scheduler, metrics, logger } = deps
  const app = new Hono<AppEnv>()

  app.use(async function requestId(c, next) {
    const given = c.req.header(REQUEST_ID_HEADER)
    const id = given && REQUEST_ID_RE.test(given) ? given : randomUUID()
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
    if (quiet) logger.debug('request', fields)
    else if (!path.endsWith('/infer')) logger.info('request', fields)
  })

  // Health and metrics stay open: Kubernetes probes and Prometheus cannot sign.
  app.get('/v2/health/live', (c) => c.json({ live: true }))
  app.get('/v2/health/ready', (c) =>
    deps.ready() ? c.json({ ready: true }) : c.json({ ready: false }, 503),
  )
  app.get('/metrics', async (c) => {
    const text = await metrics.registry.metrics()
    return c.body(text, 200, { 'content-type': metrics.registry.contentType })
  })

  app.use('/v2/*', async function readAndVerify(c, next) {
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
  })

  const modelOf = (name: string): ServedModel => {
    const m = models.get(name)
    if (!m)
      throw new AppError(
        'NOT_FOUND',
        `model '${name}' is not served here; models: ${[...models.keys()].join(', ') || '(none)'}`,
      )
    return m
  }

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
  app.all('/v2/models/:model/versions/:version/*', (c) => {
    const m = modelOf(c.req.param('model'))
    throw new AppError(
      'NOT_FOUND',
      `model '${m.name}' has no version '${c.req.param('version')}': models on this runner are unversioned (use /v2/models/${m.name}/…)`,
    )
  })
  app.all('/v2/models/:model/versions/:version', (c) => {
    const m = modelOf(c.req.param('model'))
    throw new AppError(
      'NOT_FOUND',
      `model '${m.name}' has no version '${c.req.param('version')}': models on this runner are unversioned`,
    )
  })

  app.post('/v2/models/:model/infer', async (c) => {
    const started = performance.now()
    const requestId = c.get('requestId')
    // Labels stay empty until the model is known: caller-chosen names must not grow the metric's label set.
    let labels = { model: '', variant: '', merge_path: '' }
    let rows = 0
    try {
      const model = modelOf(c.req.param('model'))
      labels = { ...labels, model: model.name }
      const type = c.req.header('content-type') ?? ''
      if (!/^application\/json\b/i.test(type))
        throw new AppError(
          'UNSUPPORTED_MEDIA_TYPE',
          `Content-Type must be application/json, got '${type || '(none)'}'`,
        )
      let json: unknown
      try {
        json = JSON.parse(c.get('body'))
      } catch (err) {
        throw new AppError(
          'INVALID_REQUEST',
          `request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
        )
      }
      const parsed = InferenceRequestSchema.safeParse(json)
      if (!parsed.success)
        throw new AppError(
          'INVALID_REQUEST',
          `invalid inference request: ${describeIssues(parsed.error)}`,
        )
      const prepared = model.prepare(parsed.data)
      labels = { ...labels, variant: prepared.variant, merge_path: prepared.path }
      rows = prepared.rows

      let timeoutMs = deps.requestTimeoutMs
      const asked = c.req.header(DEADLINE_HEADER)
      if (asked !== undefined) {
        const n = Number(asked)
        if (!Number.isFinite(n) || n <= 0)
          throw new AppError('INVALID_REQUEST', `${DEADLINE_HEADER} must be a positive number (ms)`)
        timeoutMs = Math.min(timeoutMs, Math.ceil(n))
      }
      timeoutMs = Math.max(1, Math.round(timeoutMs - (performance.now() - started)))
      const result = await scheduler.submit(prepared, { timeoutMs, signal: c.req.raw.signal })

      const response: InferenceResponse = {
        model_name: model.name,
        ...(parsed.data.id !== undefined ? { id: parsed.data.id } : {}),
        parameters: {
          variant: prepared.variant,
          merge_path: prepared.path,
          provider: model.provider,
          ...result.parameters,
        },
        outputs: result.outputs,
      }
      const seconds = (performance.now() - started) / 1000
      metrics.requests.inc({ ...labels, code: '200' })
      metrics.duration.observe(labels, seconds)
      logger.info('infer', {
        request_id: requestId,
        ...labels,
        rows,
        status: 200,
        duration_ms: Math.round(seconds * 1e6) / 1000,
      })
      return c.json(response)
    } catch (err) {
      const e = toAppError(err)
      // A client that hung up gets no response; count it as nginx does (499), not as the client's mistake.
      const status = c.req.raw.signal.aborted ? 499 : e.status
      metrics.requests.inc({ ...labels, code: String(status) })
      if (e.code === 'RUNNER_OVERLOADED')
        metrics.rejected.inc({ reason: scheduler.draining ? 'draining' : 'overloaded' })
      if (e.code === 'RUNNER_TIMEOUT') metrics.rejected.inc({ reason: 'timeout' })
      logger[status >= 500 ? 'error' : 'info']('infer', {
        request_id: requestId,
        ...labels,
        model: labels.model || c.req.param('model'),
        rows,
        status,
        code: e.code,
        duration_ms: Math.round((performance.now() - started) * 1000) / 1000,
        ...errorFields(err),
      })
      throw e
    }
  })

  // Known paths with the wrong method: 405, not 404 (the path exists).
  const getOnly = [
    '/v2',
    '/v2/health/live',
    '/v2/health/ready',
    '/v2/models/:model',
    '/v2/models/:model/ready',
    '/metrics',
  ]
  for (const path of getOnly)
    app.all(path, (c) => {
      throw new AppError(
        'METHOD_NOT_ALLOWED',
        `${c.req.method} is not allowed on ${c.req.path}; use GET`,
      )
    })
  app.all('/v2/models/:model/infer', (c) => {
    throw new AppError(
      'METHOD_NOT_ALLOWED',
      `${c.req.method} is not allowed on ${c.req.path}; use POST`,
    )
  })

  app.notFound((c) => {
    const body: ErrorBody = {
      error: `no route ${c.req.method} ${c.req.path}`,
      code: 'NOT_FOUND',
      request_id: c.get('requestId'),
    }
    return c.json(body, 404)
  })

  app.onError((err, c) => {
    let e: AppError
    if (err instanceof HTTPException)
      e = new AppError(err.status === 413 ? 'PAYLOAD_TOO_LARGE' : 'INVALID_REQUEST', err.message)
    else e = toAppError(err)
    const requestId = c.get('requestId') ?? randomUUID()
    if (e.code === 'INTERNAL' || e.code === 'MERGE_FAILED')
      logger.error('unexpected error', {
        request_id: requestId,
        path: c.req.path,
        ...errorFields(err),
      })
    const body: ErrorBody = { error: e.message, code: e.code, request_id: requestId }
    const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId }
    if (e.retryAfter !== undefined) headers['retry-after'] = String(e.retryAfter)
    return c.json(body, e.status as 400, headers)
  })

  return app
}
