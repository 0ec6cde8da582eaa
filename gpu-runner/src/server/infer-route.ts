/**
 * `POST /v2/models/{model}/infer`: validate the request (content type, JSON, schema, merge controls), queue it on
 * the scheduler within the caller's deadline, answer the outputs; count and log every outcome.
 * @module
 */
import {
  DEADLINE_HEADER,
  httpStatusOf,
  type InferenceRequest,
  InferenceRequestSchema,
  type InferenceResponse,
  parseDeadlineHeader,
  parseJsonText,
  requireJsonContentType,
  toAppError,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { PreparedRequest, RunResult, ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { errorFields } from './logger.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

/** Metric labels; empty until the model is known, so caller-chosen names never grow the label set. */
interface InferLabels {
  model: string
  variant: string
  merge_path: string
}

/** How long this request may wait for its outputs: the runner's limit, or less when the gateway asks. */
function timeoutMs(c: Context<RunnerAppEnv>, deps: AppDeps, started: number): number {
  const asked = c.req.header(DEADLINE_HEADER)
  const limit =
    asked === undefined
      ? deps.requestTimeoutMs
      : Math.min(deps.requestTimeoutMs, parseDeadlineHeader(asked))
  return Math.max(1, Math.round(limit - (performance.now() - started)))
}

function response(
  model: ServedModel,
  req: InferenceRequest,
  prepared: PreparedRequest,
  result: RunResult,
): InferenceResponse {
  return {
    model_name: model.name,
    ...(req.id !== undefined ? { id: req.id } : {}),
    parameters: {
      variant: prepared.variant,
      merge_path: prepared.path,
      provider: model.provider,
      ...result.parameters,
    },
    outputs: result.outputs,
  }
}

/** The infer handler; `modelOf` answers 404 for models not served here. */
export function inferHandler(deps: AppDeps, modelOf: (name: string) => ServedModel) {
  const { scheduler, metrics, logger } = deps
  return async function infer(c: Context<RunnerAppEnv>): Promise<Response> {
    const started = performance.now()
    const requestId = c.get('requestId')
    let labels: InferLabels = { model: '', variant: '', merge_path: '' }
    let rows = 0
    const elapsedMs = () => Math.round((performance.now() - started) * 1000) / 1000
    try {
      const model = modelOf(c.req.param('model') ?? '')
      labels = { ...labels, model: model.name }
      requireJsonContentType(c.req.header('content-type'))
      const req = parseJsonText(c.get('body'), InferenceRequestSchema, 'invalid inference request')
      const tenant = c.get('tenant') ?? ''
      const prepared: PreparedRequest = { ...model.prepare(req), tenant }
      // A recipe nobody has merged yet costs a merge: charged to the tenant that asks (429 past its quota).
      if (prepared.recipe && !model.coversRecipe(prepared.recipe.key))
        deps.mergeQuota.charge(tenant, prepared.recipe.key, Date.now())
      labels = { ...labels, variant: prepared.variant, merge_path: prepared.path }
      rows = prepared.rows
      const result = await scheduler.submit(prepared, {
        timeoutMs: timeoutMs(c, deps, started),
        signal: c.req.raw.signal,
      })
      const body = response(model, req, prepared, result)
      metrics.requests.inc({ ...labels, code: '200' })
      metrics.duration.observe(labels, (performance.now() - started) / 1000)
      logger.info('infer', {
        request_id: requestId,
        ...labels,
        rows,
        status: 200,
        duration_ms: elapsedMs(),
      })
      return c.json(body)
    } catch (err) {
      const e = toAppError(err)
      // A client that hung up gets no response; count it as nginx does (499), not as the client's mistake.
      const status = c.req.raw.signal.aborted ? httpStatusOf('CLIENT_CLOSED') : e.status
      metrics.requests.inc({ ...labels, code: String(status) })
      if (e.code === 'RUNNER_OVERLOADED')
        metrics.rejected.inc({ reason: scheduler.draining ? 'draining' : 'overloaded' })
      if (e.code === 'RUNNER_TIMEOUT') metrics.rejected.inc({ reason: 'timeout' })
      if (e.code === 'RATE_LIMITED') metrics.rejected.inc({ reason: 'merge_quota' })
      logger[status >= 500 ? 'error' : 'info']('infer', {
        request_id: requestId,
        ...labels,
        model: labels.model || c.req.param('model'),
        rows,
        status,
        code: e.code,
        duration_ms: elapsedMs(),
        ...errorFields(err),
      })
      throw e
    }
  }
}
