/**
 * gRPC `parameters` maps (`map<string, InferParameter>`, each a bool, int64, string, or Triton's double/uint64)
 * ⇄ the V2 `parameters` objects the REST side reads, merge controls included.
 *
 * InferParameter holds scalars only, but two merge controls are structured: `experts` (a map of weights) and
 * `exclude_experts` (a list). Over gRPC they travel as JSON text in `string_param`
 * (`experts: {string_param: '{"math":0.7,"code":0.3}'}`), decoded here, and then checked by the same
 * parseMergeControls as REST's, so both refuse the same things.
 * @module
 */
import { AppError, checkJsonDepth, type Parameters } from '@twinserve/shared'
import type { InferParameter, InferParameters } from './messages.ts'

/** Merge controls whose REST value is a map or a list: JSON text in `string_param` over gRPC. */
export const JSON_PARAMETER_KEYS: ReadonlySet<string> = new Set(['experts', 'exclude_experts'])

type ParameterValue = Parameters[string]

function integer(where: string, text: string): number {
  const n = Number(text)
  if (!Number.isSafeInteger(n))
    throw new AppError(
      'INVALID_REQUEST',
      `${where}: ${text} is beyond ±2^53, the largest integer a parameter may hold`,
    )
  return n
}

function jsonValue(where: string, text: string): ParameterValue {
  checkJsonDepth(text)
  try {
    return JSON.parse(text) as ParameterValue
  } catch (err) {
    throw new AppError(
      'INVALID_REQUEST',
      `${where}: string_param must be JSON (a map or a list over gRPC): ${err instanceof Error ? err.message : String(err)}`,
    )
  }
}

function decodeOne(where: string, key: string, p: InferParameter): ParameterValue {
  switch (p.parameter_choice) {
    case 'bool_param':
      return p.bool_param === true
    case 'int64_param':
      return integer(where, p.int64_param ?? '0')
    case 'uint64_param':
      return integer(where, p.uint64_param ?? '0')
    case 'double_param':
      return p.double_param ?? 0
    case 'string_param':
      return JSON_PARAMETER_KEYS.has(key)
        ? jsonValue(where, p.string_param ?? '')
        : (p.string_param ?? '')
    default:
      throw new AppError('INVALID_REQUEST', `${where}: the parameter has no value`)
  }
}

/**
 * A gRPC parameters map → a V2 parameters object; undefined when empty (proto3 cannot tell empty from absent).
 * @param where prefix for messages, e.g. `parameters` or `inputs.0.parameters`
 * @param drop keys that describe the gRPC encoding itself and mean nothing once decoded
 */
export function decodeParameters(
  map: InferParameters,
  where: string,
  drop: ReadonlySet<string> = new Set(),
): Parameters | undefined {
  const entries = Object.entries(map).filter(([k]) => !drop.has(k))
  if (entries.length === 0) return undefined
  return Object.fromEntries(entries.map(([k, p]) => [k, decodeOne(`${where}.${k}`, k, p)]))
}

/** A V2 parameters object → a gRPC parameters map (lists and maps as JSON text, as decodeParameters reads). */
export function encodeParameters(params: Parameters | undefined): InferParameters {
  const out: InferParameters = {}
  for (const [k, v] of Object.entries(params ?? {})) {
    if (typeof v === 'boolean') out[k] = { bool_param: v }
    else if (typeof v === 'string') out[k] = { string_param: v }
    else if (typeof v === 'number')
      out[k] = Number.isSafeInteger(v) ? { int64_param: String(v) } : { double_param: v }
    else out[k] = { string_param: JSON.stringify(v) }
  }
  return out
}
