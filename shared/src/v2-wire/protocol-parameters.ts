/**
 * A V2 request's `parameters` carry two vocabularies side by side: the protocol's own keys (what tritonclient and
 * KServe's SDK write themselves) and Twinserve's merge controls. This splits them, so that each is checked
 * strictly by its own schema: a misspelt merge control stays a 400, and `binary_data_output` is not one.
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
 * @module
 */
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { describeIssues } from '../http.ts'
import type { Parameters } from '../schemas/inference.ts'

/**
 * The protocol keys. `timeout` is Triton's per-request timeout in microseconds (it shortens the deadline);
 * `priority` is accepted and ignored (one priority level here). Sequence batching keys are refused by name:
 * Twinserve models are stateless, so silently ignoring them would answer a sequence wrongly.
 */
const ProtocolParametersSchema = z.strictObject({
  binary_data_output: z.boolean().optional(),
  timeout: z.number().int().nonnegative().optional(),
  priority: z.number().int().nonnegative().optional(),
})
export type ProtocolParameters = z.infer<typeof ProtocolParametersSchema>

const PROTOCOL_KEYS = new Set(Object.keys(ProtocolParametersSchema.shape))
const SEQUENCE_KEYS = new Set(['sequence_id', 'sequence_start', 'sequence_end'])

export interface SplitParameters {
  protocol: ProtocolParameters
  /** What is left: Twinserve's merge controls (parseMergeControls checks them). */
  controls: Parameters
}

/** @throws AppError INVALID_REQUEST for a mistyped protocol key or a sequence key */
export function splitRequestParameters(parameters: Parameters | undefined): SplitParameters {
  const protocol: Record<string, unknown> = {}
  const controls: Parameters = {}
  for (const [key, value] of Object.entries(parameters ?? {})) {
    if (SEQUENCE_KEYS.has(key))
      throw new AppError(
        'INVALID_REQUEST',
        `parameters.${key}: sequence batching is not supported (Twinserve models are stateless)`,
      )
    if (PROTOCOL_KEYS.has(key)) protocol[key] = value
    else controls[key] = value
  }
  const parsed = ProtocolParametersSchema.safeParse(protocol)
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', describeIssues(parsed.error, { root: 'parameters' }))
  return { protocol: parsed.data, controls }
}
