/**
 * Open Inference Protocol V2 (KServe V2 / Triton) REST bodies, plus the `parameters` maps where Twinserve
 * carries its merge controls. Both the gateway and the runner parse with these: they deploy separately and
 * versions can skew, so each side validates at its own boundary.
 * @see https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
 * @module
 */
import { z } from 'zod'

export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const
export const DatatypeSchema = z.enum(DATATYPES)
export type Datatype = z.infer<typeof DatatypeSchema>

/** Limits that keep one request from exhausting a server; bodies over them are a caller mistake (4xx). */
export const MAX_TENSOR_ELEMENTS = 16 * 1024 * 1024
export const MAX_TENSOR_RANK = 8

/** V2 parameter values are scalars; our merge controls add arrays and maps of them. */
const ScalarSchema = z.union([z.string(), z.number(), z.boolean()])
export const ParameterValueSchema = z.union([
  ScalarSchema,
  z.array(ScalarSchema),
  z.record(z.string(), ScalarSchema),
])
export const ParametersSchema = z.record(z.string(), ParameterValueSchema)
export type Parameters = z.infer<typeof ParametersSchema>

type Nested = number | boolean | string | Nested[]

/**
 * A tensor's `data`: row-major values, flat or nested by shape. Only "an array" is checked here; checkTensor
 * below walks it once, counting and checking every element against the datatype. (A recursive zod union per
 * element cost 0.75 s and 70 MB per million values, which is what let one large valid body take down a gateway
 * isolate for every tenant in it, issue #16.)
 */
const TensorDataSchema = z
  .custom<Nested[]>((v) => Array.isArray(v), { message: 'expected an array' })
  .meta({
    type: 'array',
    description:
      'Row-major values, flat or nested by shape (numbers, booleans, or strings for BYTES).',
  })

const INTEGER_RANGES: Partial<Record<Datatype, readonly [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  UINT64: [0, Number.MAX_SAFE_INTEGER],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
}

/** Flattens row-major nested `data` (V2 allows nested or flat) into one array. */
export function flattenTensorData(data: readonly Nested[]): Nested[] {
  // Flat already (the common case, and what binary tensors decode to): no copy.
  if (!data.some(Array.isArray)) return data as Nested[]
  const out: Nested[] = []
  const walk = (v: Nested): void => {
    if (Array.isArray(v)) for (const x of v) walk(x)
    else out.push(v)
  }
  for (const v of data) walk(v)
  return out
}

/**
 * The largest magnitude each floating-point datatype holds. A JSON number beyond it becomes ±Infinity when the
 * runner stores it (1e300 as FP32), and the model then answers NaN for everyone in the batch's row; so it is
 * refused here, as an integer out of its range is.
 */
export const FLOAT_MAX: Partial<Record<Datatype, number>> = {
  FP16: 65504,
  FP32: 3.4028234663852886e38,
  FP64: Number.MAX_VALUE,
}

/** Why `value` is not a valid element of `datatype`, or undefined when it is. */
function elementProblem(datatype: Datatype, value: Nested): string | undefined {
  if (datatype === 'BOOL') return typeof value === 'boolean' ? undefined : 'expected a boolean'
  if (datatype === 'BYTES') return typeof value === 'string' ? undefined : 'expected a string'
  if (typeof value !== 'number') return 'expected a number'
  if (!Number.isFinite(value)) return 'expected a finite number'
  const max = FLOAT_MAX[datatype]
  if (max !== undefined && Math.abs(value) > max)
    return `${value} is out of range for ${datatype} (|x| ≤ ${max.toPrecision(8)})`
  const range = INTEGER_RANGES[datatype]
  if (range) {
    if (!Number.isInteger(value)) return `expected an integer for ${datatype}`
    if (value < range[0] || value > range[1]) return `out of range for ${datatype}`
  }
  return undefined
}

/** What is wrong with a tensor's data given its shape and datatype (first problem only), or undefined. */
export function tensorProblem(t: {
  name: string
  shape: number[]
  datatype: Datatype
  data: Nested[]
}): { path: (string | number)[]; message: string } | undefined {
  const expected = t.shape.reduce((a, b) => a * b, 1)
  if (expected > MAX_TENSOR_ELEMENTS)
    return {
      path: ['shape'],
      message: `tensor '${t.name}' has ${expected} elements, more than the limit ${MAX_TENSOR_ELEMENTS}`,
    }
  const flat = flattenTensorData(t.data)
  if (flat.length !== expected)
    return {
      path: ['data'],
      message: `tensor '${t.name}' has shape [${t.shape.join(',')}] (${expected} elements) but ${flat.length} data values`,
    }
  for (let i = 0; i < flat.length; i++) {
    const problem = elementProblem(t.datatype, flat[i] as Nested)
    if (problem)
      return { path: ['data', i], message: `tensor '${t.name}' element ${i}: ${problem}` }
  }
  return undefined
}

function checkTensor(
  t: { name: string; shape: number[]; datatype: Datatype; data: Nested[] },
  ctx: z.RefinementCtx,
): void {
  const problem = tensorProblem(t)
  if (problem) ctx.addIssue({ code: 'custom', ...problem })
}

/**
 * An input's parameters: the binary tensor extension's `binary_data_size` (the byte length of this input's raw
 * data after the JSON header; infer-body.ts moves those bytes into `data` before this schema runs), and
 * `content_type`, which KServe's SDK may set (`str`, `np`, …; informational here). Strict: a misspelt key is a 400.
 */
export const InputParametersSchema = z.strictObject({
  binary_data_size: z.number().int().nonnegative().optional(),
  content_type: z.string().max(64).optional(),
})

export const RequestInputSchema = z
  .strictObject({
    name: z.string().min(1),
    shape: z.array(z.number().int().nonnegative()).max(MAX_TENSOR_RANK),
    datatype: DatatypeSchema,
    parameters: InputParametersSchema.optional(),
    data: TensorDataSchema,
  })
  .superRefine(checkTensor)
export type RequestInput = z.infer<typeof RequestInputSchema>

/**
 * A requested output's parameters (Triton's extensions, as tritonclient sends them): `binary_data` (answer this
 * output as raw bytes after the JSON header) and `classification: k` (answer the top k classes as
 * `"score:index[:label]"` BYTES instead of the scores).
 */
export const OutputParametersSchema = z.strictObject({
  binary_data: z.boolean().optional(),
  classification: z.number().int().min(1).max(1000).optional(),
})

export const RequestOutputSchema = z.strictObject({
  name: z.string().min(1),
  parameters: OutputParametersSchema.optional(),
})
export type RequestOutput = z.infer<typeof RequestOutputSchema>

/**
 * The request. `model_name` (KServe's SDK always sends it) and `model_version` are accepted and must agree with
 * the path. Request `parameters` hold the protocol's own keys (protocol-parameters.ts: `binary_data_output`,
 * `timeout`, `priority`) beside Twinserve's merge controls.
 */
export const InferenceRequestSchema = z.strictObject({
  id: z.string().max(256).optional(),
  model_name: z.string().min(1).max(256).optional(),
  model_version: z.string().min(1).max(128).optional(),
  parameters: ParametersSchema.optional(),
  inputs: z.array(RequestInputSchema).min(1),
  outputs: z.array(RequestOutputSchema).optional(),
})
export type InferenceRequest = z.infer<typeof InferenceRequestSchema>

/**
 * An output. `data` is absent exactly when the output travels as raw bytes after the JSON header
 * (`parameters.binary_data_size`, the binary tensor extension; infer-response-body.ts).
 */
export const ResponseOutputSchema = z
  .object({
    name: z.string(),
    shape: z.array(z.number().int().nonnegative()),
    datatype: DatatypeSchema,
    parameters: ParametersSchema.optional(),
    data: z.array(z.union([z.number(), z.boolean(), z.string()])).optional(),
  })
  .refine((o) => (o.data === undefined) === (typeof o.parameters?.binary_data_size === 'number'), {
    message: 'an output carries either data or parameters.binary_data_size',
  })
export type ResponseOutput = z.infer<typeof ResponseOutputSchema>

export const InferenceResponseSchema = z.object({
  model_name: z.string(),
  model_version: z.string().optional(),
  id: z.string().optional(),
  parameters: ParametersSchema.optional(),
  outputs: z.array(ResponseOutputSchema),
})
export type InferenceResponse = z.infer<typeof InferenceResponseSchema>

/** Tensor metadata in model metadata; -1 marks a variable dimension. */
export const TensorMetadataSchema = z.object({
  name: z.string(),
  datatype: DatatypeSchema,
  shape: z.array(z.number().int().gte(-1)),
})
export type TensorMetadata = z.infer<typeof TensorMetadataSchema>

export const ServerMetadataSchema = z.object({
  name: z.string(),
  version: z.string(),
  extensions: z.array(z.string()),
})
export type ServerMetadata = z.infer<typeof ServerMetadataSchema>

export const ModelMetadataSchema = z.object({
  name: z.string(),
  versions: z.array(z.string()).optional(),
  platform: z.string(),
  inputs: z.array(TensorMetadataSchema),
  outputs: z.array(TensorMetadataSchema),
  parameters: ParametersSchema.optional(),
})
export type ModelMetadata = z.infer<typeof ModelMetadataSchema>

export const LiveResponseSchema = z.object({ live: z.boolean() })
export const ReadyResponseSchema = z.object({ ready: z.boolean() })
export const ModelReadyResponseSchema = z.object({ name: z.string(), ready: z.boolean() })
