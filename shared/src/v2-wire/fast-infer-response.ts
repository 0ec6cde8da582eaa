/**
 * A fast accept for InferenceResponseSchema on the gateway's hot path: a plain loop over the parsed JSON that
 * says yes only to answers the schema accepts. zod stays the source of truth: whatever this does not accept
 * goes to the schema, which decides and names the problem; fast-infer-response.test.ts holds the two to the
 * same verdict on valid and broken answers. zod runs interpreted in workerd (no `eval`), so validating every
 * runner answer with it cost more CPU than everything else the answer needs (issue #17).
 * @module
 */
import { DATATYPES } from '../schemas/inference.ts'

const DATATYPE_SET: ReadonlySet<unknown> = new Set(DATATYPES)

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

const isScalar = (v: unknown) =>
  typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))

/** ParametersSchema: values are scalars, arrays of scalars, or maps of scalars. */
export function isParameters(v: unknown): boolean {
  if (!isRecord(v)) return false
  for (const key in v) {
    const value = v[key]
    if (isScalar(value)) continue
    if (Array.isArray(value)) {
      for (const x of value) if (!isScalar(x)) return false
      continue
    }
    if (!isRecord(value)) return false
    for (const k in value) if (!isScalar(value[k])) return false
  }
  return true
}

/** ResponseOutputSchema, its refinement included: `data` exactly when there is no `binary_data_size`. */
function isOutput(v: unknown): boolean {
  if (!isRecord(v)) return false
  if (typeof v.name !== 'string' || !DATATYPE_SET.has(v.datatype)) return false
  if (!Array.isArray(v.shape)) return false
  for (const d of v.shape) if (!Number.isSafeInteger(d) || (d as number) < 0) return false
  const parameters = v.parameters
  if (parameters !== undefined && !isParameters(parameters)) return false
  const data = v.data
  if (data !== undefined) {
    if (!Array.isArray(data)) return false
    for (const x of data) if (!isScalar(x)) return false
  }
  const binary =
    typeof (parameters as { binary_data_size?: unknown })?.binary_data_size === 'number'
  return (data === undefined) === binary
}

/**
 * Whether `v` (parsed JSON) is an InferenceResponse. `false` does not mean invalid: ask the schema then.
 */
export function isInferenceResponse(v: unknown): boolean {
  if (!isRecord(v) || typeof v.model_name !== 'string') return false
  if (v.model_version !== undefined && typeof v.model_version !== 'string') return false
  if (v.id !== undefined && typeof v.id !== 'string') return false
  if (v.parameters !== undefined && !isParameters(v.parameters)) return false
  if (!Array.isArray(v.outputs)) return false
  for (const o of v.outputs) if (!isOutput(o)) return false
  return true
}
