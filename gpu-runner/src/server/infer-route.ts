/**
 * `POST /v2/models/{model}[/versions/{v}]/infer`: read the body the way the V2 clients send it (JSON or the
 * binary tensor extension, any of their content types, gzip/deflate; shared/src/v2-wire), run it
 * (run-inference.ts: protocol parameters, merge controls, the scheduler within the caller's deadline, statistics,
 * metrics and the log line), and answer in the form asked for: JSON or binary outputs, compressed when the
 * client's Accept-Encoding allows (gzip or deflate; tritonclient decodes those on infer answers).
 * @module
 */
import {
  compressBody,
  DEADLINE_HEADER,
  decompressBody,
  encodeInferResponse,
  formatRoutingSummary,
  INFERENCE_HEADER_CONTENT_LENGTH,
  type InferenceRequest,
  inferHeaderLength,
  parseDeadlineHeader,
  parseInferBody,
  ROUTING_SUMMARY_HEADER,
  requestEncoding,
  responseEncoding,
  splitRequestParameters,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { ServedModel } from '../model/served-model.ts'
import type { AppDeps } from './app-deps.ts'
import { summarizeRouting } from './routing-telemetry.ts'
import { runInference } from './run-inference.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

/** Outputs answered as raw bytes: each requested output's `binary_data`, else the request's `binary_data_output`. */
function binaryOutputs(req: InferenceRequest, names: readonly string[]): Set<string> {
  const fallback = splitRequestParameters(req.parameters).protocol.binary_data_output ?? false
  if (!req.outputs || req.outputs.length === 0) return new Set(fallback ? names : [])
  return new Set(
    req.outputs.filter((o) => o.parameters?.binary_data ?? fallback).map((o) => o.name),
  )
}

/** The routed rows' summary for the gateway's per-expert counters (shared/src/routing-summary-header.ts). */
function routingHeader(weights: Float32Array, experts: readonly string[]): string | undefined {
  const s = summarizeRouting(weights, experts.length)
  if (s.rows === 0) return undefined
  return formatRoutingSummary({
    rows: s.rows,
    abstained: s.abstained,
    entropySum: s.entropies.reduce((a, h) => a + h, 0),
    experts: experts.map((name, j) => ({
      name,
      routedRows: s.routedRows[j] ?? 0,
      weightSum: s.weightSum[j] ?? 0,
    })),
  })
}

/** Request body bytes, inflated when the client compressed them (the limit applies to the inflated size too). */
async function bodyBytes(c: Context<RunnerAppEnv>, deps: AppDeps): Promise<Uint8Array> {
  const encoding = requestEncoding(c.req.header('content-encoding'))
  const raw = c.get('body')
  return encoding ? decompressBody(raw, encoding, deps.maxBodyBytes) : raw
}

/** The infer handler; `modelOf` answers 404 for models not served here. */
export function inferHandler(deps: AppDeps, modelOf: (name: string) => ServedModel) {
  return async function infer(c: Context<RunnerAppEnv>): Promise<Response> {
    const name = c.req.param('model') ?? ''
    const version = c.req.param('version')
    const call = {
      requestId: c.get('requestId'),
      tenant: c.get('tenant') ?? '',
      started: performance.now(),
      signal: c.req.raw.signal,
    }
    let req: InferenceRequest | undefined
    let routing: string | undefined
    const body = await runInference(
      deps,
      {
        ...call,
        onRouted: (w, experts) => {
          routing = routingHeader(w, experts)
        },
      },
      {
        modelName: name,
        model: () => modelOf(name),
        decode: async () => {
          const headerLength = inferHeaderLength(c.req.raw.headers)
          req = parseInferBody(await bodyBytes(c, deps), headerLength, 'decode').request
          // The gateway may ask for less than the runner's limit.
          const asked = c.req.header(DEADLINE_HEADER)
          return {
            req,
            ...(asked === undefined ? {} : { deadlineMs: parseDeadlineHeader(asked) }),
            ...(version === undefined ? {} : { version }),
          }
        },
      },
    )
    const encoded = encodeInferResponse(
      body,
      req
        ? binaryOutputs(
            req,
            body.outputs.map((o) => o.name),
          )
        : new Set(),
    )
    const headers: Record<string, string> = { 'content-type': encoded.contentType }
    if (routing !== undefined) headers[ROUTING_SUMMARY_HEADER] = routing
    if (encoded.headerLength !== undefined)
      headers[INFERENCE_HEADER_CONTENT_LENGTH] = String(encoded.headerLength)
    let bytes = encoded.body
    const encoding = responseEncoding(c.req.header('accept-encoding'))
    if (encoding) {
      bytes = await compressBody(bytes, encoding)
      headers['content-encoding'] = encoding
    }
    return c.body(bytes as Uint8Array<ArrayBuffer>, 200, headers)
  }
}
