/**
 * `POST /v2/models/{model}[/versions/{v}]/infer`: read the body the way the V2 clients send it (JSON or the
 * binary tensor extension, any of their content types, gzip/deflate; shared/src/v2-wire), validate it (schema,
 * protocol parameters, merge controls), queue it on the scheduler within the caller's deadline, and answer in the
 * form asked for (JSON or binary outputs, classification, compressed when the client accepts it). Every outcome is
 * counted and logged.
 * @module
 */
import {
  AppError,
  compressBody,
  DEADLINE_HEADER,
  decompressBody,
  encodeInferResponse,
  httpStatusOf,
  INFERENCE_HEADER_CONTENT_LENGTH,
  type InferenceRequest,
  type InferenceResponse,
  inferHeaderLength,
  type ProtocolParameters,
  parseDeadlineHeader,
  parseInferBody,
  requestEncoding,
  responseEncoding,
  splitRequestParameters,
  toAppError,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { PreparedRequest, RunResult, ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { checkClassifiable, classify } from './classification.ts'
import { errorFields } from './logger.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

/** Metric labels; empty until the model is known, so caller-chosen names never grow the label set. */
interface InferLabels {
  model: string
  variant: string
  merge_path: string
}

/**
 * How long this request may wait for its outputs: the runner's limit, or less when the gateway's deadline header
 * or the protocol's `timeout` parameter (microseconds, as Triton reads it) asks for less.
 */
function timeoutMs(
  c: Context<RunnerAppEnv>,
  deps: AppDeps,
  started: number,
  protocol: ProtocolParameters,
): number {
  const asked = c.req.header(DEADLINE_HEADER)
  let limit =
    asked === undefined
      ? deps.requestTimeoutMs
      : Math.min(deps.requestTimeoutMs, parseDeadlineHeader(asked))
  if (protocol.timeout !== undefined && protocol.timeout > 0)
    limit = Math.min(limit, protocol.timeout / 1000)
  return Math.max(1, Math.round(limit - (performance.now() - started)))
}

/** The model the path names, at the version it names (and the body's `model_name`/`model_version` agree). */
function checkIdentity(
  model: ServedModel,
  pathVersion: string | undefined,
  req: InferenceRequest,
): void {
  if (req.model_name !== undefined && req.model_name !== model.name)
    throw new AppError(
      'INVALID_REQUEST',
      `model_name '${req.model_name}' in the body does not match the model '${model.name}' in the path`,
    )
  for (const v of [pathVersion, req.model_version])
    if (v !== undefined && v !== model.version)
      throw new AppError(
        'NOT_FOUND',
        `model '${model.name}' has no version '${v}'; its versions are ${model.version}`,
      )
}

/** Outputs answered as raw bytes: each requested output's `binary_data`, else the request's `binary_data_output`. */
function binaryOutputs(
  req: InferenceRequest,
  protocol: ProtocolParameters,
  names: readonly string[],
): Set<string> {
  const fallback = protocol.binary_data_output ?? false
  if (!req.outputs || req.outputs.length === 0) return new Set(fallback ? names : [])
  return new Set(
    req.outputs.filter((o) => o.parameters?.binary_data ?? fallback).map((o) => o.name),
  )
}

function response(
  model: ServedModel,
  req: InferenceRequest,
  prepared: PreparedRequest,
  result: RunResult,
): InferenceResponse {
  const k = new Map(
    (req.outputs ?? []).flatMap((o) =>
      o.parameters?.classification ? [[o.name, o.parameters.classification] as const] : [],
    ),
  )
  return {
    model_name: model.name,
    model_version: model.version,
    ...(req.id !== undefined ? { id: req.id } : {}),
    parameters: {
      variant: prepared.variant,
      merge_path: prepared.path,
      provider: model.provider,
      ...result.parameters,
    },
    outputs: result.outputs.map((o) => {
      const top = k.get(o.name)
      return top === undefined ? o : classify(o, top, result.labels?.[o.name])
    }),
  }
}

/** Request body bytes, inflated when the client compressed them (the limit applies to the inflated size too). */
async function bodyBytes(c: Context<RunnerAppEnv>, deps: AppDeps): Promise<Uint8Array> {
  const encoding = requestEncoding(c.req.header('content-encoding'))
  const raw = c.get('body')
  return encoding ? decompressBody(raw, encoding, deps.maxBodyBytes) : raw
}

/** The infer handler; `modelOf` answers 404 for models not served here. */
export function inferHandler(deps: AppDeps, modelOf: (name: string) => ServedModel) {
  const { scheduler, metrics, logger, stats } = deps
  return async function infer(c: Context<RunnerAppEnv>): Promise<Response> {
    const started = performance.now()
    const requestId = c.get('requestId')
    let labels: InferLabels = { model: '', variant: '', merge_path: '' }
    let rows = 0
    const elapsedMs = () => Math.round((performance.now() - started) * 1000) / 1000
    try {
      const model = modelOf(c.req.param('model') ?? '')
      labels = { ...labels, model: model.name }
      const headerLength = inferHeaderLength(c.req.raw.headers)
      const { request: req } = parseInferBody(await bodyBytes(c, deps), headerLength, 'decode')
      checkIdentity(model, c.req.param('version'), req)
      const { protocol, controls } = splitRequestParameters(req.parameters)
      const declared = new Map(model.metadata().outputs.map((o) => [o.name, o]))
      for (const o of req.outputs ?? []) {
        const meta = declared.get(o.name)
        if (meta && o.parameters?.classification)
          checkClassifiable(meta, o.parameters.classification)
      }
      const tenant = c.get('tenant') ?? ''
      const prepared: PreparedRequest = {
        ...model.prepare({ ...req, parameters: controls }),
        tenant,
      }
      // A recipe nobody has merged yet costs a merge: charged to the tenant that asks (429 past its quota).
      if (prepared.recipe && !model.coversRecipe(prepared.recipe.key))
        deps.mergeQuota.charge(tenant, prepared.recipe.key, Date.now())
      labels = { ...labels, variant: prepared.variant, merge_path: prepared.path }
      rows = prepared.rows
      const submitted = performance.now()
      const result = await scheduler.submit(prepared, {
        timeoutMs: timeoutMs(c, deps, started, protocol),
        signal: c.req.raw.signal,
      })
      const body = response(model, req, prepared, result)
      const encoded = encodeInferResponse(body, binaryOutputs(req, protocol, prepared.outputs))
      const headers: Record<string, string> = { 'content-type': encoded.contentType }
      if (encoded.headerLength !== undefined)
        headers[INFERENCE_HEADER_CONTENT_LENGTH] = String(encoded.headerLength)
      let bytes = encoded.body
      const encoding = responseEncoding(c.req.header('accept-encoding'))
      if (encoding) {
        bytes = await compressBody(bytes, encoding)
        headers['content-encoding'] = encoding
      }
      stats.succeeded(
        model.name,
        (performance.now() - started) * 1e6,
        ((prepared.startedAt ?? submitted) - submitted) * 1e6,
      )
      metrics.requests.inc({ ...labels, code: '200' })
      metrics.duration.observe(labels, (performance.now() - started) / 1000)
      logger.info('infer', {
        request_id: requestId,
        ...labels,
        rows,
        status: 200,
        duration_ms: elapsedMs(),
      })
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
    } catch (err) {
      const e = toAppError(err)
      // A client that hung up gets no response; count it as nginx does (499), not as the client's mistake.
      const status = c.req.raw.signal.aborted ? httpStatusOf('CLIENT_CLOSED') : e.status
      if (labels.model) stats.failed(labels.model, (performance.now() - started) * 1e6)
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
