/**
 * A gRPC `ModelInferRequest` → the V2 REST request body it means, validated with the same InferenceRequestSchema
 * the REST route uses: gRPC and REST accept and refuse the same requests, with the same messages.
 *
 * Each input's elements come from `raw_input_contents` (one entry per input, in order) or from its typed
 * `contents`, never both. `model_name` and `model_version` are the service's to resolve; `id` is echoed.
 * @module
 */
import {
  AppError,
  DATATYPES,
  type Datatype,
  describeIssues,
  type InferenceRequest,
  InferenceRequestSchema,
  MAX_TENSOR_ELEMENTS,
} from '@twinserve/shared'
import { decodeParameters } from './infer-parameters.ts'
import type { InferInputTensor, ModelInferRequest } from './messages.ts'
import { decodeRaw, type TensorValue } from './raw-tensors.ts'
import { decodeContents } from './typed-contents.ts'

/**
 * Input parameters that describe how the tensor was encoded on the wire (KServe's client sets
 * `binary_data_size` on raw inputs), consumed by the decoding here; the raw content's own length is checked.
 */
const ENCODING_PARAMETERS: ReadonlySet<string> = new Set(['binary_data_size'])

function datatypeOf(input: InferInputTensor, i: number): Datatype {
  const d = DATATYPES.find((t) => t === input.datatype)
  if (!d)
    throw new AppError(
      'INVALID_REQUEST',
      `inputs.${i}.datatype: '${input.datatype}' is not one of ${DATATYPES.join(', ')}`,
    )
  return d
}

/** int64 dimensions arrive as decimal strings; a dimension that cannot be a size is refused here. */
function shapeOf(input: InferInputTensor, i: number): number[] {
  return input.shape.map((text, j) => {
    const n = Number(text)
    if (!Number.isSafeInteger(n) || n < 0)
      throw new AppError(
        'INVALID_REQUEST',
        `inputs.${i}.shape.${j}: ${text} is not a dimension (a whole number ≥ 0)`,
      )
    return n
  })
}

function elementsOf(name: string, shape: readonly number[]): number {
  const count = shape.reduce((a, b) => a * b, 1)
  if (count > MAX_TENSOR_ELEMENTS)
    throw new AppError(
      'INVALID_REQUEST',
      `tensor '${name}' has ${count} elements, more than the limit ${MAX_TENSOR_ELEMENTS}`,
    )
  return count
}

const FLOATS: ReadonlySet<Datatype> = new Set(['FP16', 'FP32', 'FP64'])

/**
 * NaN and ±Infinity cannot be written in JSON, so REST never receives them; binary content can carry them, and
 * they would turn a row's outputs into NaN. Refused with the element named.
 */
function finite(input: InferInputTensor, i: number, datatype: Datatype, data: TensorValue[]) {
  if (!FLOATS.has(datatype)) return data
  const at = data.findIndex((v) => !Number.isFinite(v))
  if (at >= 0)
    throw new AppError(
      'INVALID_REQUEST',
      `inputs.${i}.data.${at}: tensor '${input.name}' element ${at} is ${String(data[at])}; expected a finite number`,
    )
  return data
}

function inputData(
  msg: ModelInferRequest,
  input: InferInputTensor,
  i: number,
  datatype: Datatype,
  shape: readonly number[],
): TensorValue[] {
  return finite(input, i, datatype, contentsOf(msg, input, i, datatype, shape))
}

function contentsOf(
  msg: ModelInferRequest,
  input: InferInputTensor,
  i: number,
  datatype: Datatype,
  shape: readonly number[],
): TensorValue[] {
  const raw = msg.raw_input_contents
  if (raw.length > 0) {
    if (input.contents)
      throw new AppError(
        'INVALID_REQUEST',
        `input '${input.name}' has typed contents but the request carries raw_input_contents: use one or the other`,
      )
    const content = raw[i]
    if (!content)
      throw new AppError(
        'INVALID_REQUEST',
        `raw_input_contents has ${raw.length} entries for ${msg.inputs.length} inputs: one per input, in order`,
      )
    return decodeRaw(input.name, datatype, elementsOf(input.name, shape), content)
  }
  if (!input.contents)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${input.name}' has no contents and the request no raw_input_contents`,
    )
  return decodeContents(input.name, datatype, input.contents)
}

/**
 * Converts and validates a ModelInferRequest.
 * @throws AppError INVALID_REQUEST naming what is wrong
 */
export function toInferenceRequest(msg: ModelInferRequest): InferenceRequest {
  if (msg.raw_input_contents.length > msg.inputs.length)
    throw new AppError(
      'INVALID_REQUEST',
      `raw_input_contents has ${msg.raw_input_contents.length} entries for ${msg.inputs.length} inputs: one per input, in order`,
    )
  const inputs = msg.inputs.map((input, i) => {
    const datatype = datatypeOf(input, i)
    const shape = shapeOf(input, i)
    const parameters = decodeParameters(
      input.parameters,
      `inputs.${i}.parameters`,
      ENCODING_PARAMETERS,
    )
    return {
      name: input.name,
      shape,
      datatype,
      ...(parameters ? { parameters } : {}),
      data: inputData(msg, input, i, datatype, shape),
    }
  })
  const parameters = decodeParameters(msg.parameters, 'parameters')
  const body = {
    ...(msg.id !== '' ? { id: msg.id } : {}),
    ...(parameters ? { parameters } : {}),
    inputs,
    ...(msg.outputs.length > 0
      ? {
          outputs: msg.outputs.map((o, i) => {
            const p = decodeParameters(o.parameters, `outputs.${i}.parameters`)
            return { name: o.name, ...(p ? { parameters: p } : {}) }
          }),
        }
      : {}),
  }
  const parsed = InferenceRequestSchema.safeParse(body)
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      `invalid inference request: ${describeIssues(parsed.error)}`,
    )
  return parsed.data
}
