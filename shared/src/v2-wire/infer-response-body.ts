/**
 * An inference answer on the wire: plain JSON, or (when any output was asked for as binary) a JSON header
 * followed by those outputs' raw bytes in output order, with `Inference-Header-Content-Length` naming the
 * header's length and each binary output's `parameters.binary_data_size` its byte count.
 * @module
 */
import { AppError } from '../errors.ts'
import { checkJsonDepth, describeIssues } from '../http.ts'
import { utf8Text } from '../read-body-text.ts'
import {
  type InferenceResponse,
  InferenceResponseSchema,
  type ResponseOutput,
} from '../schemas/inference.ts'
import { encodeTensorBytes } from './binary-tensors.ts'

export interface EncodedInferResponse {
  body: Uint8Array
  /** Set when the body is binary: the JSON header's byte length. */
  headerLength?: number
  contentType: 'application/json' | 'application/octet-stream'
}

const encoder = new TextEncoder()

/** Encodes `response`, moving the outputs named in `binary` out of the JSON into raw bytes. */
export function encodeInferResponse(
  response: InferenceResponse,
  binary: ReadonlySet<string>,
): EncodedInferResponse {
  if (!response.outputs.some((o) => binary.has(o.name)))
    return { body: encoder.encode(JSON.stringify(response)), contentType: 'application/json' }
  const tensors: Uint8Array[] = []
  const outputs = response.outputs.map((o): ResponseOutput => {
    if (!binary.has(o.name)) return o
    const bytes = encodeTensorBytes(o.datatype, o.data ?? [])
    tensors.push(bytes)
    const { data: _data, ...rest } = o
    return { ...rest, parameters: { ...o.parameters, binary_data_size: bytes.byteLength } }
  })
  const header = encoder.encode(JSON.stringify({ ...response, outputs }))
  const body = new Uint8Array(header.byteLength + tensors.reduce((a, t) => a + t.byteLength, 0))
  body.set(header, 0)
  let at = header.byteLength
  for (const t of tensors) {
    body.set(t, at)
    at += t.byteLength
  }
  return { body, headerLength: header.byteLength, contentType: 'application/octet-stream' }
}

/**
 * Checks an answer a runner sent (the gateway's side): the JSON header against the response schema, and that the
 * binary outputs' sizes add up to the bytes after it. Tensor values are not decoded.
 * @returns the parsed header (binary outputs have no `data`)
 * @throws AppError BAD_GATEWAY naming what is wrong
 */
export function checkInferResponseBody(
  body: Uint8Array,
  headerLength: number | undefined,
): InferenceResponse {
  const bad = (why: string) => new AppError('BAD_GATEWAY', `runner answer: ${why}`)
  if (headerLength !== undefined && headerLength > body.byteLength)
    throw bad(
      `Inference-Header-Content-Length ${headerLength} exceeds the body (${body.byteLength} bytes)`,
    )
  const text = utf8Text(headerLength === undefined ? body : body.subarray(0, headerLength))
  let json: unknown
  try {
    checkJsonDepth(text)
    json = JSON.parse(text)
  } catch (err) {
    throw bad(`not JSON (${err instanceof Error ? err.message : String(err)})`)
  }
  const parsed = InferenceResponseSchema.safeParse(json)
  if (!parsed.success) throw bad(describeIssues(parsed.error))
  const sizes = parsed.data.outputs.reduce((a, o) => {
    const size = o.parameters?.binary_data_size
    return a + (typeof size === 'number' ? size : 0)
  }, 0)
  const tail = headerLength === undefined ? 0 : body.byteLength - headerLength
  if (sizes !== tail)
    throw bad(`binary outputs declare ${sizes} bytes but ${tail} follow the header`)
  return parsed.data
}
