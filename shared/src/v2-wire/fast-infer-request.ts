/**
 * A fast accept for a JSON inference request (InferenceRequestSchema, tensors as JSON `data`) on the gateway's
 * hot path: a plain loop that says yes only to requests the schema accepts, with the schema's own tensor check
 * (tensorProblem). zod stays the source of truth: whatever this does not accept goes to the schema, which
 * decides and names the problem, so a caller's mistake gets the same 400 as before; fast-infer-request.test.ts
 * holds the two to the same verdict. zod runs interpreted in workerd (no `eval`), issue #17.
 * @module
 */
import {
  DATATYPES,
  type InferenceRequest,
  MAX_TENSOR_RANK,
  tensorProblem,
} from '../schemas/inference.ts'
import { isParameters, isRecord } from './fast-infer-response.ts'

const DATATYPE_SET: ReadonlySet<unknown> = new Set(DATATYPES)

const isString = (v: unknown, min: number, max: number) =>
  typeof v === 'string' && v.length >= min && v.length <= max

/** Every key of `v` is one of `allowed` (strict objects refuse the rest). */
function onlyKeys(v: Record<string, unknown>, allowed: ReadonlySet<string>): boolean {
  for (const key in v) if (!allowed.has(key)) return false
  return true
}

const REQUEST_KEYS = new Set([
  'id',
  'model_name',
  'model_version',
  'parameters',
  'inputs',
  'outputs',
])
const INPUT_KEYS = new Set(['name', 'shape', 'datatype', 'parameters', 'data'])
const INPUT_PARAMETER_KEYS = new Set(['content_type'])
const OUTPUT_KEYS = new Set(['name', 'parameters'])
const OUTPUT_PARAMETER_KEYS = new Set(['binary_data', 'classification'])

/** A JSON input: `binary_data_size` (raw bytes after a header) is left to the schema path. */
function isJsonInput(v: unknown): boolean {
  if (!isRecord(v) || !onlyKeys(v, INPUT_KEYS)) return false
  if (!isString(v.name, 1, Number.POSITIVE_INFINITY) || !DATATYPE_SET.has(v.datatype)) return false
  const { shape, data, parameters } = v
  if (!Array.isArray(shape) || shape.length > MAX_TENSOR_RANK) return false
  for (const d of shape) if (!Number.isSafeInteger(d) || (d as number) < 0) return false
  if (parameters !== undefined) {
    // Only content_type (informational); binary_data_size or anything else goes to the schema.
    if (!isRecord(parameters) || !onlyKeys(parameters, INPUT_PARAMETER_KEYS)) return false
    if (parameters.content_type !== undefined && !isString(parameters.content_type, 0, 64))
      return false
  }
  if (!Array.isArray(data)) return false
  return tensorProblem(v as Parameters<typeof tensorProblem>[0]) === undefined
}

function isOutput(v: unknown): boolean {
  if (!isRecord(v) || !onlyKeys(v, OUTPUT_KEYS) || !isString(v.name, 1, Number.POSITIVE_INFINITY))
    return false
  const p = v.parameters
  if (p === undefined) return true
  if (!isRecord(p) || !onlyKeys(p, OUTPUT_PARAMETER_KEYS)) return false
  if (p.binary_data !== undefined && typeof p.binary_data !== 'boolean') return false
  const k = p.classification
  return k === undefined || (Number.isSafeInteger(k) && (k as number) >= 1 && (k as number) <= 1000)
}

/**
 * Whether `v` (parsed JSON) is an InferenceRequest with every tensor as JSON data. `false` does not mean
 * invalid: ask the schema then.
 */
export function isJsonInferenceRequest(v: unknown): v is InferenceRequest {
  if (!isRecord(v) || !onlyKeys(v, REQUEST_KEYS)) return false
  if (v.id !== undefined && !isString(v.id, 0, 256)) return false
  if (v.model_name !== undefined && !isString(v.model_name, 1, 256)) return false
  if (v.model_version !== undefined && !isString(v.model_version, 1, 128)) return false
  if (v.parameters !== undefined && !isParameters(v.parameters)) return false
  if (!Array.isArray(v.inputs) || v.inputs.length === 0) return false
  for (const input of v.inputs) if (!isJsonInput(input)) return false
  if (v.outputs !== undefined) {
    if (!Array.isArray(v.outputs)) return false
    for (const o of v.outputs) if (!isOutput(o)) return false
  }
  return true
}
