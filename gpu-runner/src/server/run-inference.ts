/**
 * One inference, whatever the transport: a validated V2 request for a served model → prepared (merge controls,
 * inputs) → charged to the tenant's merge quota when it asks for a merge nobody made yet → queued on the scheduler
 * within the deadline → the V2 response; every outcome counted and logged once. The REST route (infer-route.ts)
 * and the gRPC service (grpc/inference-service.ts) both call it, so the two answer and refuse alike.
 * @module
 */
import {
  AppError,
  httpStatusOf,
  type InferenceRequest,
  type InferenceResponse,
  splitRequestParameters,
  toAppError,
} from '@twinserve/shared'
import type { PreparedRequest, RunResult, ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { checkClassifiable, classify } from './classification.ts'
import { errorFields } from './logger.ts'

/** What the transport knows about the call. */
export interface InferenceCall {
  requestId: string
  /** Owner of any merge this request causes (quota, cache entry); '' when unauthenticated. */
  tenant: string
  /** When the request arrived (performance.now()). */
  started: number
  /** Aborted when the caller hung up. */
  signal: AbortSignal
  /** Logged beside the request (e.g. `protocol: 'grpc'`). */
  logFields?: Record<string, unknown>
  /** Told the applied weights of the rows the router weighed (REST sends their summary to the gateway). */
  onRouted?: (weights: Float32Array, experts: readonly string[]) => void
}

/** Metric labels; empty until the model is known, so caller-chosen names never grow the label set. */
interface InferLabels {
  model: string
  variant: string
  merge_path: string
}

/** The model the path names, at the version it names (and the body's `model_name`/`model_version` agree). */
function checkIdentity(model: ServedModel, pathVersion: string | undefined, req: InferenceRequest) {
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

/** Requested outputs with `classification: k` must have a class axis; refused before any work is queued. */
function checkClassification(model: ServedModel, req: InferenceRequest): void {
  const declared = new Map(model.metadata().outputs.map((o) => [o.name, o]))
  for (const o of req.outputs ?? []) {
    const meta = declared.get(o.name)
    if (meta && o.parameters?.classification) checkClassifiable(meta, o.parameters.classification)
  }
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

/** The transport's request, decoded and validated. */
export interface DecodedRequest {
  req: InferenceRequest
  /** How long the caller waits, from `started`; the runner's own limit caps it. Undefined: the runner's limit. */
  deadlineMs?: number
  /** The version the transport's address names (REST's `/versions/{v}/`), checked against the package's. */
  version?: string
}

/** How the transport finds the model and decodes the request; each throws AppError for what is not valid. */
export interface RequestSource {
  /** The name the caller asked for (logged when the model is unknown). */
  modelName: string
  model: () => ServedModel
  decode: (model: ServedModel) => DecodedRequest | Promise<DecodedRequest>
}

/**
 * Runs the request `source` names and decodes. Its steps are called inside the accounting, so that unknown
 * models and invalid requests are counted and logged too (with the model label once the model is known).
 * @throws AppError for every failure, after counting and logging it
 */
export async function runInference(
  deps: AppDeps,
  call: InferenceCall,
  source: RequestSource,
): Promise<InferenceResponse> {
  const { scheduler, metrics, logger } = deps
  const { started, requestId } = call
  let labels: InferLabels = { model: '', variant: '', merge_path: '' }
  let rows = 0
  const elapsedMs = () => Math.round((performance.now() - started) * 1000) / 1000
  let held: ServedModel | undefined
  try {
    const model = source.model()
    // Leased at once (no await between lookup and hold): a hot swap now leaves this request on this version.
    deps.repository.hold(model)
    held = model
    labels = { ...labels, model: model.name }
    const { req, deadlineMs, version } = await source.decode(model)
    checkIdentity(model, version, req)
    // The protocol's own parameters (binary_data_output, timeout, …) are not merge controls.
    const { protocol, controls } = splitRequestParameters(req.parameters)
    checkClassification(model, req)
    const prepared: PreparedRequest = {
      ...model.prepare({ ...req, parameters: controls }),
      tenant: call.tenant,
    }
    // A recipe nobody has merged yet costs a merge: charged to the tenant that asks (429 past its quota).
    if (prepared.recipe && !model.coversRecipe(prepared.recipe.key))
      deps.mergeQuota.charge(call.tenant, prepared.recipe.key, Date.now())
    labels = { ...labels, variant: prepared.variant, merge_path: prepared.path }
    rows = prepared.rows
    // Triton's `timeout` parameter is in microseconds.
    const timeoutMs = protocol.timeout ? protocol.timeout / 1000 : Number.POSITIVE_INFINITY
    const limit = Math.min(deps.requestTimeoutMs, deadlineMs ?? Number.POSITIVE_INFINITY, timeoutMs)
    const submitted = performance.now()
    const result = await scheduler.submit(prepared, {
      timeoutMs: Math.max(1, Math.round(limit - (performance.now() - started))),
      signal: call.signal,
    })
    const body = response(model, req, prepared, result)
    if (result.routedWeights) call.onRouted?.(result.routedWeights, model.experts)
    deps.stats.succeeded(
      model.name,
      (performance.now() - started) * 1e6,
      ((prepared.startedAt ?? submitted) - submitted) * 1e6,
    )
    metrics.requests.inc({ ...labels, code: '200' })
    metrics.duration.observe(labels, (performance.now() - started) / 1000)
    if (result.parameters.abstained_rows)
      metrics.abstainedRows.inc({ model: model.name }, result.parameters.abstained_rows)
    logger.info('infer', {
      request_id: requestId,
      ...call.logFields,
      ...labels,
      rows,
      status: 200,
      duration_ms: elapsedMs(),
    })
    return body
  } catch (err) {
    const e = toAppError(err)
    // A client that hung up gets no response; count it as nginx does (499), not as the client's mistake.
    const status = call.signal.aborted ? httpStatusOf('CLIENT_CLOSED') : e.status
    if (labels.model) deps.stats.failed(labels.model, (performance.now() - started) * 1e6)
    metrics.requests.inc({ ...labels, code: String(status) })
    if (e.code === 'RUNNER_OVERLOADED')
      metrics.rejected.inc({ reason: scheduler.draining ? 'draining' : 'overloaded' })
    if (e.code === 'RUNNER_TIMEOUT') metrics.rejected.inc({ reason: 'timeout' })
    if (e.code === 'RATE_LIMITED') metrics.rejected.inc({ reason: 'merge_quota' })
    logger[status >= 500 ? 'error' : 'info']('infer', {
      request_id: requestId,
      ...call.logFields,
      ...labels,
      model: labels.model || source.modelName,
      rows,
      status,
      code: e.code,
      duration_ms: elapsedMs(),
      ...errorFields(err),
    })
    throw e
  } finally {
    if (held) deps.repository.release(held)
  }
}
