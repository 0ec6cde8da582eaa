/**
 * Reads an inference request body the way the V2 clients send it (JSON or the binary tensor extension, with or
 * without a Content-Type, gzip or deflate; shared/src/v2-wire) and checks it before any runner is called: the
 * JSON header against the schema and every binary input's byte count against its shape. Tensor values are not
 * decoded here: the runner decodes them, and the gateway forwards the bytes as they came (inflated).
 * @module
 */
import {
  decompressBody,
  type InferenceRequest,
  inferHeaderLength,
  parseInferBody,
  readBodyBytes,
  requestEncoding,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'

export interface InferRequestBody {
  /** The request as checked; binary inputs have `data: []`. */
  request: InferenceRequest
  /** The JSON part exactly as sent (the whole body for JSON requests). */
  headerText: string
  /** The raw tensors after the JSON header; undefined for a JSON body. */
  tensors?: Uint8Array
}

/**
 * 415 for other content types or codings, 413 past the limit (MAX_BODY_BYTES; MAX_JSON_BODY_BYTES for JSON
 * bodies; inflated sizes too), 408, 400 naming the problem.
 */
export async function readInferBody(c: Context<AppEnv>): Promise<InferRequestBody> {
  const config = c.get('config')
  const headerLength = inferHeaderLength(c.req.raw.headers)
  const json = headerLength === undefined
  const maxBytes = json
    ? Math.min(config.MAX_BODY_BYTES, config.MAX_JSON_BODY_BYTES)
    : config.MAX_BODY_BYTES
  const limitName = json
    ? 'the limit for JSON bodies (send large tensors as binary: Inference-Header-Content-Length)'
    : 'the limit'
  const encoding = requestEncoding(c.req.header('content-encoding'))
  const raw = await readBodyBytes(c.req.raw, maxBytes, {
    timeoutMs: config.BODY_TIMEOUT_MS,
    limitName,
  })
  const bytes = encoding ? await decompressBody(raw, encoding, maxBytes) : raw
  const { request, headerText } = parseInferBody(bytes, headerLength, 'check')
  return {
    request,
    headerText,
    ...(headerLength !== undefined ? { tensors: bytes.subarray(headerLength) } : {}),
  }
}
