/**
 * Pieces the gateway's OpenAPI document and the runner's (scripts/generate-openapi.ts) both use: references into
 * `#/components/schemas`, the Open Inference Protocol schemas both services speak, and the runner-signature
 * security schemes. Runtime-neutral (zod and shared only), so the Node script imports it directly.
 * @module
 */
import {
  ErrorBodySchema,
  InferenceRequestSchema,
  InferenceResponseSchema,
  LiveResponseSchema,
  MergeControlsSchema,
  ModelMetadataSchema,
  ModelReadyResponseSchema,
  ReadyResponseSchema,
  ServerMetadataSchema,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
} from '@twinserve/shared'

export type Json = Record<string, unknown>

export const ref = (id: string): Json => ({ $ref: `#/components/schemas/${id}` })
/** A JSON response (or request body) described by the component `schemaId`. */
export const json = (schemaId: string, description: string): Json => ({
  description,
  content: { 'application/json': { schema: ref(schemaId) } },
})
export const error = (description: string): Json => json('ErrorBody', description)

/** Open Inference Protocol V2 request bodies (component id → schema), for `componentSchemas(…, 'input', …)`. */
export const OIP_INPUT_SCHEMAS = {
  InferenceRequest: InferenceRequestSchema,
  MergeControls: MergeControlsSchema,
}

/** Open Inference Protocol V2 responses (and the error body), for `componentSchemas(…, 'output', …)`. */
export const OIP_OUTPUT_SCHEMAS = {
  ErrorBody: ErrorBodySchema,
  InferenceResponse: InferenceResponseSchema,
  ModelMetadata: ModelMetadataSchema,
  ServerMetadata: ServerMetadataSchema,
  LiveResponse: LiveResponseSchema,
  ReadyResponse: ReadyResponseSchema,
  ModelReadyResponse: ModelReadyResponseSchema,
}

/** How a request signed with RUNNER_SIGNING_SECRET (shared/src/signing.ts) is described. */
export const RUNNER_SIGNATURE_SCHEMES = {
  runnerSignature: {
    type: 'apiKey',
    in: 'header',
    name: SIGNATURE_HEADER,
    description:
      'hex HMAC-SHA256 with RUNNER_SIGNING_SECRET over METHOD\\nPATH\\nTIMESTAMP\\nsha256(body)',
  },
  runnerTimestamp: { type: 'apiKey', in: 'header', name: TIMESTAMP_HEADER },
}
