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
  DEADLINE_HEADER,
  errorContent as error,
  GatewayMetricsSchema,
  type Json,
  jsonContent as json,
  OIP_INPUT_SCHEMAS,
  OIP_OUTPUT_SCHEMAS,
  REQUEST_ID_HEADER,
  RegistryAckSchema,
  RUNNER_REGISTRY_PATHS,
  RUNNER_SIGNATURE_SCHEMES,
  RunnerDeregistrationSchema,
  RunnerListSchema,
  RunnerRegistrationSchema,
  schemaRef as ref,
} from '@twinserve/shared'
import { RATE_LIMIT_REMAINING_HEADER } from '../rate-limit/rate-limit.ts'
import { RUNNER_HEADER } from '../routing/route-request.ts'
import {
  experimentComponents,
  experimentInferHeaders,
  experimentInferParameters,
  experimentPaths,
} from './experiment-paths.ts'

const requestIdHeader = {
  [REQUEST_ID_HEADER]: {
    description:
      "The request's id (the caller's if it sent a safe one), also in logs and error bodies.",
    schema: { type: 'string' },
  },
}
const retryAfter = {
  'retry-after': { description: 'Seconds to wait.', schema: { type: 'integer' } },
}

const modelParam: Json = {
  name: 'model',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' },
}

/** Errors every key-authenticated route can answer. */
const keyErrors: Json = {
  '401': error('Missing, unknown or revoked API key (UNAUTHENTICATED).'),
  '403': error('The key lacks the scope or does not cover the model (FORBIDDEN).'),
  '429': {
    ...error('Rate limit or daily quota of the key exceeded (RATE_LIMITED).'),
    headers: retryAfter,
  },
}
const routedErrors: Json = {
  '502': error('A runner answered with something that is not the protocol (BAD_GATEWAY).'),
  '503': {
    ...error(
      'No runner holds the model after the cold-start wait, or every runner tried failed (NO_RUNNER); or the runners are overloaded (RUNNER_OVERLOADED).',
    ),
    headers: retryAfter,
  },
  '504': error('The request deadline passed (RUNNER_TIMEOUT).'),
}
const routedHeaders = {
  ...requestIdHeader,
  [RUNNER_HEADER]: { description: 'The runner that answered.', schema: { type: 'string' } },
  [RATE_LIMIT_REMAINING_HEADER]: {
    description: "Tokens left in the key's bucket.",
    schema: { type: 'integer' },
  },
}
const deadlineParam: Json = {
  name: DEADLINE_HEADER,
  in: 'header',
  required: false,
  description: 'Give up after this many ms (capped by the gateway’s REQUEST_DEADLINE_MS).',
  schema: { type: 'integer', minimum: 1 },
}
const keySecurity = [{ apiKey: [] }]
const runnerSecurity = [{ runnerSignature: [], runnerTimestamp: [] }]

function membership(schemaId: string, summary: string): Json {
  return {
    post: {
      tags: ['runners'],
      summary,
      security: runnerSecurity,
      requestBody: {
        required: true,
        content: { 'application/json': { schema: ref(schemaId) } },
      },
      responses: {
        '200': json('RegistryAck', 'Accepted; heartbeat at the interval given.'),
        '400': error('Body does not match the schema.'),
        '401': error('Missing, wrong or expired signature.'),
      },
    },
  }
}

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
      { name: 'admin', description: 'API keys, runners, metrics (admin scope)' },
      { name: 'runners', description: 'Runner membership (HMAC-signed by runners)' },
      {
        name: 'experiments',
        description: 'A/B experiments on merge strategies, feedback, dashboard',
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
      '/v2/health/live': {
        get: {
          tags: ['inference'],
          summary: 'Liveness of the gateway',
          responses: { '200': json('LiveResponse', 'The gateway is up.') },
        },
      },
      '/v2/health/ready': {
        get: {
          tags: ['inference'],
          summary: 'Whether any healthy runner holds a ready model',
          responses: {
            '200': json('ReadyResponse', 'Ready: `{ready: true}`.'),
            '503': json('ReadyResponse', 'Not ready: `{ready: false}`.'),
          },
        },
      },
      '/v2': {
        get: {
          tags: ['inference'],
          summary: 'Server metadata of the gateway',
          responses: { '200': json('ServerMetadata', 'Name, version, extensions.') },
        },
      },
      '/v2/models/{model}': {
        get: {
          tags: ['inference'],
          summary: 'Model metadata (from a runner holding the model)',
          security: keySecurity,
          parameters: [modelParam, deadlineParam],
          responses: {
            '200': {
              ...json('ModelMetadata', 'Inputs, outputs, platform.'),
              headers: routedHeaders,
            },
            '400': error('Invalid model name.'),
            '404': error('The runner does not know the model.'),
            ...keyErrors,
            ...routedErrors,
          },
        },
      },
      '/v2/models/{model}/ready': {
        get: {
          tags: ['inference'],
          summary: 'Whether a healthy runner holds the model ready',
          security: keySecurity,
          parameters: [modelParam],
          responses: {
            '200': json('ModelReadyResponse', 'Ready.'),
            '503': json('ModelReadyResponse', 'Not ready (no runner holds it now).'),
            '400': error('Invalid model name.'),
            ...keyErrors,
          },
        },
      },
      '/v2/models/{model}/infer': {
        post: {
          tags: ['inference'],
          summary: 'Inference, routed to a runner with failover',
          description:
            'Validated (tensors against their shape and datatype, merge controls in `parameters`) before anything is forwarded. Waits up to COLD_START_WAIT_MS for a runner when none holds the model.',
          security: keySecurity,
          parameters: [modelParam, deadlineParam, ...experimentInferParameters],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: ref('InferenceRequest') } },
          },
          responses: {
            '200': {
              ...json('InferenceResponse', 'The runner’s answer.'),
              headers: { ...routedHeaders, ...experimentInferHeaders },
            },
            '400': error('Malformed body, tensor or merge control (INVALID_REQUEST).'),
            '404': error('Unknown model or expert at the runner.'),
            '413': error('Body larger than MAX_BODY_BYTES.'),
            '415': error('Content-Type is not application/json.'),
            ...keyErrors,
            ...routedErrors,
          },
        },
      },
      '/admin/keys': {
        post: {
          tags: ['admin'],
          summary: 'Create an API key (the key is shown once)',
          security: keySecurity,
          requestBody: {
            required: true,
            content: { 'application/json': { schema: ref('CreateApiKeyRequest') } },
          },
          responses: {
            '201': json('CreatedApiKey', 'Created.'),
            '400': error('Invalid body.'),
            ...keyErrors,
          },
        },
        get: {
          tags: ['admin'],
          summary: 'List API keys',
          security: keySecurity,
          parameters: [
            { name: 'tenant', in: 'query', required: false, schema: { type: 'string' } },
            {
              name: 'include_revoked',
              in: 'query',
              required: false,
              schema: { type: 'string', enum: ['true', 'false'] },
            },
          ],
          responses: {
            '200': json('ApiKeyList', 'Keys, oldest first.'),
            '400': error('Invalid query.'),
            ...keyErrors,
          },
        },
      },
      '/admin/keys/{id}': {
        delete: {
          tags: ['admin'],
          summary: 'Revoke an API key (idempotent)',
          security: keySecurity,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            '200': json('ApiKey', 'The key, with revoked_at set.'),
            '400': error('Invalid key id.'),
            '404': error('No such key.'),
            ...keyErrors,
          },
        },
      },
      '/admin/runners': {
        get: {
          tags: ['admin'],
          summary: 'Registered runners with health, circuit breaker and in-flight counts',
          security: keySecurity,
          responses: { '200': json('RunnerList', 'Live runners.'), ...keyErrors },
        },
      },
      '/metrics': {
        get: {
          tags: ['admin'],
          summary: 'Per-model and per-runner counters',
          security: keySecurity,
          responses: {
            '200': {
              description:
                'Prometheus text format by default; GatewayMetrics with Accept: application/json.',
              content: {
                'text/plain': { schema: { type: 'string' } },
                'application/json': { schema: ref('GatewayMetrics') },
              },
            },
            ...keyErrors,
          },
        },
      },
      [RUNNER_REGISTRY_PATHS.register]: membership('RunnerRegistration', 'A runner joins'),
      [RUNNER_REGISTRY_PATHS.heartbeat]: membership(
        'RunnerRegistration',
        'A runner reports its state and load',
      ),
      [RUNNER_REGISTRY_PATHS.deregister]: membership('RunnerDeregistration', 'A runner leaves'),
      ...experimentPaths({ ref, json, error, keyErrors, keySecurity }),
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
