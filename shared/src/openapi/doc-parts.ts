/**
 * Pieces the gateway's OpenAPI document (gateway/src/openapi) and the runner's (gpu-runner/src/server) both use:
 * references into `#/components/schemas`, the Open Inference Protocol schemas both services speak, and the
 * runner-signature security schemes.
 * @module
 */

import { ErrorBodySchema } from '../schemas/error.ts'
import {
  InferenceRequestSchema,
  InferenceResponseSchema,
  LiveResponseSchema,
  ModelMetadataSchema,
  ModelReadyResponseSchema,
  ReadyResponseSchema,
  ServerMetadataSchema,
} from '../schemas/inference.ts'
import { MergeControlsSchema } from '../schemas/merge-controls.ts'
import {
  InferenceStatisticsSchema,
  ModelConfigSchema,
  RepositoryIndexSchema,
} from '../schemas/triton-extensions.ts'
import {
  CONTENT_SHA256_HEADER,
  NONCE_HEADER,
  SIGNATURE_HEADER,
  TENANT_HEADER,
  TIMESTAMP_HEADER,
} from '../signing.ts'

export type Json = Record<string, unknown>

/** A reference to the component schema `id`. */
export const schemaRef = (id: string): Json => ({ $ref: `#/components/schemas/${id}` })
/** A JSON response (or request body) described by the component `schemaId`. */
export const jsonContent = (schemaId: string, description: string): Json => ({
  description,
  content: { 'application/json': { schema: schemaRef(schemaId) } },
})
/** An error response: the shared error body. */
export const errorContent = (description: string): Json => jsonContent('ErrorBody', description)

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
  ModelConfig: ModelConfigSchema,
  InferenceStatistics: InferenceStatisticsSchema,
  RepositoryIndex: RepositoryIndexSchema,
}

/** How a request signed with RUNNER_SIGNING_SECRET (shared/src/signing.ts) is described. */
export const RUNNER_SIGNATURE_SCHEMES = {
  runnerSignature: {
    type: 'apiKey',
    in: 'header',
    name: SIGNATURE_HEADER,
    description:
      'hex HMAC-SHA256 with RUNNER_SIGNING_SECRET over TWINSERVE-HMAC-SHA256-2\\nMETHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nTENANT\\nsha256(body); checked with the timestamp and size before the body is read, each nonce accepted once',
  },
  runnerTimestamp: { type: 'apiKey', in: 'header', name: TIMESTAMP_HEADER },
  runnerNonce: { type: 'apiKey', in: 'header', name: NONCE_HEADER },
  runnerContentSha256: { type: 'apiKey', in: 'header', name: CONTENT_SHA256_HEADER },
  runnerTenant: {
    type: 'apiKey',
    in: 'header',
    name: TENANT_HEADER,
    description: 'the tenant the gateway forwards for (signed; per-tenant merge quotas)',
  },
}
