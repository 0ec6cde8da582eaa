/**
 * The V2 response → a gRPC `ModelInferResponse`. Outputs go in `raw_output_contents`, as Triton answers (its
 * client and KServe's read raw outputs first; the typed contents would cost more bytes and, for FP16, cannot be
 * written at all). The response parameters (`variant`, `merge_path`, `provider`, …) keep their names.
 * @module
 */
import type { InferenceResponse } from '@twinserve/shared'
import { encodeParameters } from './infer-parameters.ts'
import type { ModelInferResponse } from './messages.ts'
import { encodeRaw } from './raw-tensors.ts'

export function toModelInferResponse(
  res: InferenceResponse,
  modelVersion: string,
): ModelInferResponse {
  return {
    model_name: res.model_name,
    model_version: modelVersion,
    id: res.id ?? '',
    parameters: encodeParameters(res.parameters),
    outputs: res.outputs.map((o) => ({
      name: o.name,
      datatype: o.datatype,
      shape: o.shape,
      ...(o.parameters ? { parameters: encodeParameters(o.parameters) } : {}),
    })),
    // The runner's own answers always carry `data` (only the REST wire moves it out of the JSON).
    raw_output_contents: res.outputs.map((o) => encodeRaw(o.datatype, o.data ?? [])),
  }
}
