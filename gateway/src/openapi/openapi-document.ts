/**
 * The gateway's OpenAPI 3.1 document, generated from the shared zod schemas (the same objects that validate
 * requests), so the document cannot drift from what the gateway accepts. Served at `GET /openapi.json`.
 * @module
 */
import {
  ApiKeyListSchema,
  ApiKeySchema,
  CreateApiKeyRequestSchema,
  CreatedApiKeySchema,
  componentSchemas,
  GatewayMetricsSchema,
  type Json,
  OIP_INPUT_SCHEMAS,
  OIP_OUTPUT_SCHEMAS,
  RegistryAckSchema,
  RUNNER_SIGNATURE_SCHEMES,
  RunnerDeregistrationSchema,
  RunnerListSchema,
  RunnerRegistrationSchema,
} from '@twinserve/shared'
import { ADMIN_PATHS, MEMBERSHIP_PATHS } from './admin-paths.ts'
import { experimentComponents, experimentPaths } from './experiment-paths.ts'
import { GENERATION_PATHS, generationComponents } from './generation-paths.ts'
import { INFERENCE_PATHS } from './inference-paths.ts'
import { rolloutComponents, rolloutPaths } from './rollout-paths.ts'

export function buildOpenApiDocument(version: string): Json {
  const schemas = {
    ...componentSchemas(
      {
        ...OIP_INPUT_SCHEMAS,
        CreateApiKeyRequest: CreateApiKeyRequestSchema,
        RunnerRegistration: RunnerRegistrationSchema,
        RunnerDeregistration: RunnerDeregistrationSchema,
      },
      'input',
      'InputShared_',
    ),
    ...componentSchemas(
      {
        ...OIP_OUTPUT_SCHEMAS,
        ApiKey: ApiKeySchema,
        CreatedApiKey: CreatedApiKeySchema,
        ApiKeyList: ApiKeyListSchema,
        RunnerList: RunnerListSchema,
        RegistryAck: RegistryAckSchema,
        GatewayMetrics: GatewayMetricsSchema,
      },
      'output',
      'OutputShared_',
    ),
    ...experimentComponents(),
    ...generationComponents(),
    ...rolloutComponents(),
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Twinserve gateway',
      version,
      description:
        'Open Inference Protocol V2 in front of Twinserve runners, with API keys, rate limits, routing with failover and cold-start waits. Merge controls go in the inference request’s `parameters` (schema MergeControls).',
    },
    tags: [
      { name: 'inference', description: 'Open Inference Protocol V2' },
      {
        name: 'generation',
        description:
          'OpenAI-compatible completions and Triton’s generate extension (decoder packages)',
      },
      { name: 'admin', description: 'API keys, runners, metrics (admin scope)' },
      { name: 'runners', description: 'Runner membership (HMAC-signed by runners)' },
      {
        name: 'experiments',
        description: 'A/B experiments on merge strategies, feedback, dashboard',
      },
      {
        name: 'rollouts',
        description: 'Versioned rollouts with a canary and automatic rollback (admin scope)',
      },
    ],
    components: {
      schemas,
      securitySchemes: {
        apiKey: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key (tsk_…) or, for admin routes, the bootstrap admin secret.',
        },
        ...RUNNER_SIGNATURE_SCHEMES,
      },
    },
    paths: {
      ...INFERENCE_PATHS,
      ...GENERATION_PATHS,
      ...ADMIN_PATHS,
      ...MEMBERSHIP_PATHS,
      ...experimentPaths(),
      ...rolloutPaths(),
      '/openapi.json': {
        get: {
          summary: 'This document',
          responses: {
            '200': { description: 'OpenAPI 3.1', content: { 'application/json': {} } },
          },
        },
      },
    },
  }
}

let cached: { version: string; doc: Json } | undefined

/** Built on first use (not at isolate start, which has a CPU budget) and kept for the isolate's life. */
export function openApiDocument(version: string): Json {
  if (cached?.version !== version) cached = { version, doc: buildOpenApiDocument(version) }
  return cached.doc
}
