/**
 * An inference request body as the V2 clients send it. Content-Type cannot tell binary from JSON
 * (tritonclient.http sends none, its aio twin `application/octet-stream` on every POST, KServe's SDK
 * `application/json` or `application/octet-stream`), so the `Inference-Header-Content-Length` header decides:
 * present, the body is a JSON header of that many bytes followed by raw tensors in input order, each
 * `inputs[i].parameters.binary_data_size` bytes long; absent, the body is JSON. Other content types
 * (`text/plain`, forms) are refused with 415.
 *
 *   request bytes ──decompress (Content-Encoding)──▶ [ JSON header | tensor 0 | tensor 1 | … ]
 *                                                        ▲ Inference-Header-Content-Length bytes
 * @module
 */
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { checkJsonDepth, describeIssues, isJsonContentType } from '../http.ts'
import { utf8Text } from '../read-body-text.ts'
import {
  DatatypeSchema,
  type InferenceRequest,
  InferenceRequestSchema,
  InputParametersSchema,
  MAX_TENSOR_ELEMENTS,
  MAX_TENSOR_RANK,
  RequestInputSchema,
} from '../schemas/inference.ts'
import { countBytesElements, decodeTensorBytes, ELEMENT_BYTES } from './binary-tensors.ts'
import { isJsonInferenceRequest } from './fast-infer-request.ts'

export const INFERENCE_HEADER_CONTENT_LENGTH = 'inference-header-content-length'

/**
 * The JSON header's length when the body is binary, or undefined when it is JSON.
 * @throws AppError UNSUPPORTED_MEDIA_TYPE for a non-JSON, non-binary Content-Type; INVALID_REQUEST for a
 * malformed header length
 */
export function inferHeaderLength(headers: Headers): number | undefined {
  const length = headers.get(INFERENCE_HEADER_CONTENT_LENGTH)
  if (length !== null) {
    if (!/^\d{1,10}$/.test(length.trim()))
      throw new AppError(
        'INVALID_REQUEST',
        `Inference-Header-Content-Length must be a byte count, got '${length}'`,
      )
    return Number(length.trim())
  }
  const type = headers.get('content-type')
  const mediaType = type?.split(';')[0]?.trim().toLowerCase()
  if (!type || isJsonContentType(type) || mediaType === 'application/octet-stream') return undefined
  throw new AppError(
    'UNSUPPORTED_MEDIA_TYPE',
    `Content-Type must be application/json, or application/octet-stream with Inference-Header-Content-Length (got '${type}')`,
  )
}

/** The header's top level, with inputs checked one by one below (JSON or binary, each by its own schema). */
const HeaderSchema = InferenceRequestSchema.extend({ inputs: z.array(z.unknown()).min(1) })

/** A binary input in the header: everything but `data`, which follows the header as raw bytes. */
const BinaryInputSchema = z.strictObject({
  name: z.string().min(1),
  shape: z.array(z.number().int().nonnegative()).max(MAX_TENSOR_RANK),
  datatype: DatatypeSchema,
  parameters: InputParametersSchema.extend({ binary_data_size: z.number().int().nonnegative() }),
})

export interface ParsedInferBody {
  /** The request, with every binary input's elements moved into `data` (mode `decode`), or `data: []` (`check`). */
  request: InferenceRequest
  /** The JSON part as sent (the whole body for JSON requests). */
  headerText: string
  /** Whether any input came as raw bytes. */
  binary: boolean
}

function parseJson(text: string, what: string): unknown {
  checkJsonDepth(text)
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new AppError(
      'INVALID_REQUEST',
      `${what} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    )
  }
}

function fail(error: { readonly issues: readonly z.core.$ZodIssue[] }, root?: string): never {
  throw new AppError(
    'INVALID_REQUEST',
    `invalid inference request: ${describeIssues(error, root ? { root } : {})}`,
  )
}

/**
 * Splits, checks and (in mode `decode`) decodes an inference body. Mode `check` is the gateway's: it validates
 * the JSON header and that each binary input's byte count fits its shape, without reading tensor values, and
 * forwards the bytes as they came.
 * @param headerLength from inferHeaderLength; undefined for a JSON body
 * @throws AppError INVALID_REQUEST naming what is wrong
 */
export function parseInferBody(
  body: Uint8Array,
  headerLength: number | undefined,
  mode: 'decode' | 'check',
): ParsedInferBody {
  if (headerLength !== undefined && headerLength > body.byteLength)
    throw new AppError(
      'INVALID_REQUEST',
      `Inference-Header-Content-Length is ${headerLength} but the body has only ${body.byteLength} bytes`,
    )
  const headerBytes = headerLength === undefined ? body : body.subarray(0, headerLength)
  let headerText: string
  let json: unknown
  try {
    headerText = utf8Text(headerBytes, headerLength === undefined ? 'body' : 'the JSON header')
    json = parseJson(headerText, headerLength === undefined ? 'body' : 'the JSON header')
  } catch (err) {
    // The usual cause: raw tensors sent without the header that says where the JSON ends.
    if (headerLength === undefined && err instanceof AppError)
      throw new AppError(
        err.code,
        `${err.message} (a body with raw tensors needs the Inference-Header-Content-Length header)`,
      )
    throw err
  }
  // The common request (JSON tensors) passes a plain-loop check; any doubt goes to the schemas below.
  if (headerLength === undefined && isJsonInferenceRequest(json))
    return { request: json, headerText, binary: false }
  const top = HeaderSchema.safeParse(json)
  if (!top.success) fail(top.error)
  const tensors = headerLength === undefined ? new Uint8Array(0) : body.subarray(headerLength)
  let offset = 0
  let binary = false
  const inputs = top.data.inputs.map((raw, i) => {
    const sized =
      typeof raw === 'object' &&
      raw !== null &&
      typeof (raw as { parameters?: { binary_data_size?: unknown } }).parameters
        ?.binary_data_size === 'number'
    if (!sized) {
      const parsed = RequestInputSchema.safeParse(raw)
      if (!parsed.success) fail(parsed.error, `inputs.${i}`)
      return parsed.data
    }
    if (headerLength === undefined)
      throw new AppError(
        'INVALID_REQUEST',
        `inputs.${i}.parameters.binary_data_size is set but the request has no Inference-Header-Content-Length header: send the JSON header's byte length in it, or the tensor as JSON data`,
      )
    const parsed = BinaryInputSchema.safeParse(raw)
    if (!parsed.success) fail(parsed.error, `inputs.${i}`)
    const input = parsed.data
    binary = true
    const what = `inputs[${i}] '${input.name}'`
    const size = input.parameters.binary_data_size
    if (offset + size > tensors.byteLength)
      throw new AppError(
        'INVALID_REQUEST',
        `${what}: binary_data_size ${size} runs past the body (${tensors.byteLength - offset} tensor bytes left after the header)`,
      )
    const bytes = tensors.subarray(offset, offset + size)
    offset += size
    const elements = input.shape.reduce((a, b) => a * b, 1)
    if (elements > MAX_TENSOR_ELEMENTS)
      throw new AppError(
        'INVALID_REQUEST',
        `${what} has ${elements} elements, more than the limit ${MAX_TENSOR_ELEMENTS}`,
      )
    if (mode === 'check') {
      const count =
        input.datatype === 'BYTES'
          ? countBytesElements(bytes, what)
          : bytes.byteLength / ELEMENT_BYTES[input.datatype]
      if (count !== elements)
        throw new AppError(
          'INVALID_REQUEST',
          input.datatype === 'BYTES'
            ? `${what}: ${count} BYTES elements where its shape holds ${elements}`
            : `${what}: ${bytes.byteLength} bytes where ${elements} ${input.datatype} values take ${elements * ELEMENT_BYTES[input.datatype]}`,
        )
      return { ...input, data: [] }
    }
    const data = decodeTensorBytes(input.datatype, bytes, elements, what)
    // Raw floats can hold what JSON cannot: NaN and ±Infinity poison a batch's rows, so they are named here.
    const bad = data.findIndex((v) => typeof v === 'number' && !Number.isFinite(v))
    if (bad >= 0)
      throw new AppError(
        'INVALID_REQUEST',
        `${what}: element ${bad} is ${data[bad]}; inputs must be finite numbers`,
      )
    // The decoded values meet the same element checks as JSON data (ranges, finiteness).
    const checked = RequestInputSchema.safeParse({ ...input, data })
    if (!checked.success) fail(checked.error, `inputs.${i}`)
    return checked.data
  })
  if (headerLength !== undefined && offset !== tensors.byteLength)
    throw new AppError(
      'INVALID_REQUEST',
      `the body has ${tensors.byteLength - offset} bytes after the last binary input (the inputs' binary_data_size add up to ${offset})`,
    )
  return { request: { ...top.data, inputs }, headerText, binary }
}
