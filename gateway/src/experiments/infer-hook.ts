/**
 * The inference route's experiment step: find the model's running experiment (cached), assign the request an
 * arm, forward the arm's merge controls in place of the request's `parameters`, echo the arm in
 * `x-twinserve-arm` and record the exposure off the request path.
 * @module
 */
import {
  AppError,
  ARM_HEADER,
  EXPERIMENT_HEADER,
  INFERENCE_HEADER_CONTENT_LENGTH,
  type Parameters,
  splitRequestParameters,
  toAppError,
  USER_ID_HEADER,
  UserIdSchema,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { RUNNER_HEADER } from '../routing/route-request.ts'
import { errorFields, log } from '../util/log.ts'
import { activeExperiment } from './active-experiments.ts'
import { type AssignmentOutcome, assign } from './assignment.ts'
import { addExposure, type ExposureRecord, scheduleExposureFlush } from './exposure-buffer.ts'
import { extractPrediction } from './prediction.ts'

/** What goes to the runner: the body, the variant to prefer runners for, and whether it merges per request. */
export interface Forward {
  /** JSON text, or a binary tensor body (JSON header + raw tensors). */
  body: string | Uint8Array
  /** For a binary body: its Content-Type and Inference-Header-Content-Length. */
  bodyHeaders?: Record<string, string>
  variant: string | undefined
  merge: boolean
}

export interface InferInput {
  model: string
  /** The request's JSON as received (validated): the whole body, or a binary body's JSON header. */
  text: string
  /** A binary body's raw tensors after the JSON header (forwarded untouched); undefined for JSON bodies. */
  tensors?: Uint8Array
  /** The merge controls (the protocol's own keys, e.g. `binary_data_output`, left out). */
  parameters: Parameters | undefined
  /** ms since epoch when the request arrived */
  arrived: number
}

const encoder = new TextEncoder()

/** The body to forward for `text`: as is, or re-joined with the tensors behind a fresh header length. */
function forwardBody(input: InferInput, text: string): Pick<Forward, 'body' | 'bodyHeaders'> {
  if (!input.tensors) return { body: text }
  const header = encoder.encode(text)
  const body = new Uint8Array(header.byteLength + input.tensors.byteLength)
  body.set(header)
  body.set(input.tensors, header.byteLength)
  return {
    body,
    bodyHeaders: {
      'content-type': 'application/octet-stream',
      [INFERENCE_HEADER_CONTENT_LENGTH]: String(header.byteLength),
    },
  }
}

function variantOf(parameters: Parameters | undefined): string | undefined {
  const v = parameters?.variant
  return typeof v === 'string' ? v : undefined
}

/** A `merge_method` request: materialised per recipe on the runner (routed without hedging). */
const mergesOf = (parameters: Parameters | undefined) => parameters?.merge_method !== undefined

/**
 * The body with its merge controls replaced by the arm's; the protocol's own keys (`binary_data_output`, …)
 * stay, since they say how the caller reads the answer. `parameters` is removed when nothing is left.
 */
function withParameters(text: string, controls: Parameters): string {
  const body = JSON.parse(text) as Record<string, unknown>
  const { protocol } = splitRequestParameters(body.parameters as Parameters | undefined)
  const parameters = { ...protocol, ...controls }
  if (Object.keys(parameters).length > 0) body.parameters = parameters
  else delete body.parameters
  return JSON.stringify(body)
}

function unitOf(c: Context<AppEnv>, unit: 'api_key' | 'user_id'): string | undefined {
  if (unit === 'api_key') return c.get('principal').key_id
  const given = c.req.header(USER_ID_HEADER)
  if (given === undefined) return undefined
  const parsed = UserIdSchema.safeParse(given)
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      `${USER_ID_HEADER}: ${parsed.error.issues[0]?.message ?? 'malformed'}`,
    )
  return parsed.data
}

/**
 * Runs `route` with the request as its experiment arm says; without a running experiment (or outside it),
 * exactly as sent.
 */
export async function serveWithExperiment(
  c: Context<AppEnv>,
  input: InferInput,
  route: (forward: Forward) => Promise<Response>,
): Promise<Response> {
  const asSent: Forward = {
    ...forwardBody(input, input.text),
    variant: variantOf(input.parameters),
    merge: mergesOf(input.parameters),
  }
  const pin = c.req.header(ARM_HEADER)
  if (pin !== undefined && !c.get('principal').scopes.includes('admin'))
    throw new AppError(
      'FORBIDDEN',
      `${ARM_HEADER}: pinning an arm needs a key with the admin scope`,
    )
  const config = c.get('config')
  let active: Awaited<ReturnType<typeof activeExperiment>>
  try {
    active = await activeExperiment(c.env, config, input.model)
  } catch (err) {
    // Experiments must never take serving down: without its experiment (D1 or the bandit unreachable), the
    // request is served as sent and simply not enrolled.
    log('warn', 'experiment_lookup_failed', {
      request_id: c.get('requestId'),
      model: input.model,
      ...errorFields(err),
    })
    if (pin !== undefined) throw err
    return route(asSent)
  }
  if (!active) {
    if (pin !== undefined)
      throw new AppError(
        'INVALID_REQUEST',
        `${ARM_HEADER}: model '${input.model}' has no running experiment whose arm could be pinned`,
      )
    return route(asSent)
  }
  const { experiment } = active
  const outcome: AssignmentOutcome = assign(active, {
    unitId: unitOf(c, experiment.unit),
    pin,
    hasOwnControls: input.parameters !== undefined && Object.keys(input.parameters).length > 0,
  })
  if (outcome.kind === 'none') return route(asSent)
  const applied = outcome.kind === 'arm' ? outcome.arm : outcome.control
  const forward: Forward = {
    ...forwardBody(input, withParameters(input.text, applied.parameters)),
    variant: variantOf(applied.parameters),
    merge: mergesOf(applied.parameters),
  }
  if (outcome.kind === 'fallback') return route(forward)

  const principal = c.get('principal')
  const base = {
    tenant: principal.tenant,
    request_id: c.get('requestId'),
    experiment_id: experiment.id,
    arm: outcome.arm.name,
    unit_id: outcome.unitId,
    key_id: principal.key_id,
    model: input.model,
    pinned: outcome.pinned,
    ts: input.arrived,
  }
  const record = (status: number, runnerId: string | null, body: Promise<string> | undefined) => {
    const latency = Date.now() - input.arrived
    addExposure(
      (async (): Promise<ExposureRecord> => {
        let prediction: string[] | null = null
        if (body)
          try {
            prediction = extractPrediction(await body, experiment.prediction_output) ?? null
          } catch (err) {
            log('debug', 'prediction_unreadable', {
              request_id: base.request_id,
              ...errorFields(err),
            })
          }
        return { ...base, latency_ms: latency, status, runner_id: runnerId, prediction }
      })(),
    )
    const flush = scheduleExposureFlush(c.env, config)
    if (flush)
      try {
        c.executionCtx.waitUntil(flush)
      } catch {
        // No execution context (a direct app.request in a unit test): the flush runs on its own timer.
      }
  }

  // Set before routing, so error answers (built by onError from this context) name the arm too.
  c.header(ARM_HEADER, outcome.arm.name)
  c.header(EXPERIMENT_HEADER, experiment.id)
  let res: Response
  try {
    res = await route(forward)
  } catch (err) {
    record(toAppError(err).status, c.get('requestLog').runnerId ?? null, undefined)
    throw err
  }
  // The body is a string in memory (route-request.ts builds it so): read it here rather than tee the stream,
  // whose copy would wait for the caller to read theirs, and hold the exposure (and its flush) until then.
  const text = await res.text()
  const answer = new Response(text, { status: res.status, headers: res.headers })
  answer.headers.set(ARM_HEADER, outcome.arm.name)
  answer.headers.set(EXPERIMENT_HEADER, experiment.id)
  record(
    res.status,
    res.headers.get(RUNNER_HEADER),
    res.status === 200 ? Promise.resolve(text) : undefined,
  )
  return answer
}
