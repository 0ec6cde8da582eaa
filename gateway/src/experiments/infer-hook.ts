/**
 * The inference route's experiment step (enrolment.ts): the request's arm, if any, its merge controls forwarded
 * in place of the request's `parameters`, the arm echoed in `x-twinserve-arm`, and the exposure recorded off the
 * request path with the prediction read from the answer.
 * @module
 */
import {
  INFERENCE_HEADER_CONTENT_LENGTH,
  type Parameters,
  splitRequestParameters,
  toAppError,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { RUNNER_HEADER } from '../routing/route-request.ts'
import { enrol, nameArm } from './enrolment.ts'
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
  const enrolment = await enrol(c, {
    model: input.model,
    controls: input.parameters,
    arrived: input.arrived,
  })
  if (enrolment.kind === 'as_sent') return route(asSent)
  const forward: Forward = {
    ...forwardBody(input, withParameters(input.text, enrolment.controls)),
    variant: variantOf(enrolment.controls),
    merge: mergesOf(enrolment.controls),
  }
  if (enrolment.kind === 'fallback') return route(forward)

  let res: Response
  try {
    res = await route(forward)
  } catch (err) {
    enrolment.record({
      status: toAppError(err).status,
      runnerId: c.get('requestLog').runnerId ?? null,
    })
    throw err
  }
  // The body is a string in memory (route-request.ts builds it so): read it here rather than tee the stream,
  // whose copy would wait for the caller to read theirs, and hold the exposure (and its flush) until then.
  const text = await res.text()
  const answer = nameArm(
    new Response(text, { status: res.status, headers: res.headers }),
    enrolment,
  )
  enrolment.record({
    status: res.status,
    runnerId: res.headers.get(RUNNER_HEADER),
    prediction:
      res.status === 200 ? () => extractPrediction(text, enrolment.predictionOutput) : undefined,
  })
  return answer
}
