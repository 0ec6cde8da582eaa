/**
 * The runner's OpenAPI 3.1 document (docs/api/runner-openapi.json, written by `npm run docs:openapi`): the routes
 * app.ts serves, with the shared zod schemas they speak, so the reference cannot drift from what the runner
 * accepts. openapi-document.test.ts checks it names exactly the app's routes.
 * @module
 */
import {
  componentSchemas,
  DEADLINE_HEADER,
  errorContent as error,
  type Json,
  jsonContent as json,
  OIP_INPUT_SCHEMAS,
  OIP_OUTPUT_SCHEMAS,
  RUNNER_SIGNATURE_SCHEMES,
  schemaRef as ref,
} from '@twinserve/shared'

// The tenant header is signed when present, not required: it is not listed here.
const signed = [
  { runnerSignature: [], runnerTimestamp: [], runnerNonce: [], runnerContentSha256: [] },
]
const model: Json = { name: 'model', in: 'path', required: true, schema: { type: 'string' } }
const deadline: Json = {
  name: DEADLINE_HEADER,
  in: 'header',
  required: false,
  description: 'The gateway waits this many ms for this attempt; the runner never waits longer.',
  schema: { type: 'integer', minimum: 1 },
}
const unsigned = error('Missing, wrong or expired signature (UNAUTHENTICATED).')

/** Probes cannot sign: health is open. */
const HEALTH_PATHS: Json = {
  '/v2/health/live': {
    get: {
      summary: 'Liveness (the process serves HTTP); unsigned',
      responses: { '200': json('LiveResponse', 'Live.') },
    },
  },
  '/v2/health/ready': {
    get: {
      summary: 'Readiness: every package loaded and not draining; unsigned',
      responses: {
        '200': json('ReadyResponse', 'Ready.'),
        '503': json('ReadyResponse', 'Loading or draining.'),
      },
    },
  },
}

/** Scrapers cannot sign either. */
const METRICS_PATH: Json = {
  '/metrics': {
    get: {
      summary: 'Prometheus metrics (twinserve_runner_*); unsigned, keep it inside the cluster',
      responses: {
        '200': {
          description: 'Prometheus text format.',
          content: { 'text/plain': { schema: { type: 'string' } } },
        },
      },
    },
  },
}

const INFER: Json = {
  post: {
    summary: 'Inference, with per-request merge controls',
    security: signed,
    parameters: [model, deadline],
    requestBody: {
      required: true,
      content: { 'application/json': { schema: ref('InferenceRequest') } },
    },
    responses: {
      '200': json('InferenceResponse', 'Outputs (and the expert weights applied).'),
      '400': error('Malformed body, tensor or merge control (INVALID_REQUEST).'),
      '401': unsigned,
      '404': error('No such model (NOT_FOUND) or expert (UNKNOWN_EXPERT).'),
      '413': error('Body larger than RUNNER_MAX_BODY_BYTES (PAYLOAD_TOO_LARGE).'),
      '415': error('Content-Type is not application/json (UNSUPPORTED_MEDIA_TYPE).'),
      '503': {
        ...error('Queue full or draining (RUNNER_OVERLOADED).'),
        headers: { 'retry-after': { schema: { type: 'integer' } } },
      },
      '504': error('Deadline passed before the run finished (RUNNER_TIMEOUT).'),
    },
  },
}

/** What the gateway calls, signed. */
const SIGNED_PATHS: Json = {
  '/v2': {
    get: {
      summary: 'Server metadata (with provider and models)',
      security: signed,
      responses: {
        '200': json('ServerMetadata', 'Name, version, extensions.'),
        '401': unsigned,
      },
    },
  },
  '/v2/models/{model}': {
    get: {
      summary: 'Model metadata (experts, variants, provider in parameters)',
      security: signed,
      parameters: [model],
      responses: {
        '200': json('ModelMetadata', 'Inputs, outputs, platform.'),
        '401': unsigned,
        '404': error('No such model (NOT_FOUND).'),
      },
    },
  },
  '/v2/models/{model}/ready': {
    get: {
      summary: 'Whether the model is ready',
      security: signed,
      parameters: [model],
      responses: {
        '200': json('ModelReadyResponse', 'Ready.'),
        '503': json('ModelReadyResponse', 'Not ready (draining).'),
        '401': unsigned,
        '404': error('No such model (NOT_FOUND).'),
      },
    },
  },
  '/v2/models/{model}/infer': INFER,
}

export function buildRunnerOpenApiDocument(version: string): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Twinserve GPU runner',
      version,
      description:
        'Open Inference Protocol V2 REST, served by `twinserve serve`. The gateway signs every request (HMAC-SHA256 with RUNNER_SIGNING_SECRET); health and metrics are unsigned for probes and scrapers. Merge controls go in the inference request’s `parameters` (schema MergeControls).',
    },
    components: {
      schemas: {
        ...componentSchemas(OIP_INPUT_SCHEMAS, 'input', 'InputShared_'),
        ...componentSchemas(OIP_OUTPUT_SCHEMAS, 'output', 'OutputShared_'),
      },
      securitySchemes: RUNNER_SIGNATURE_SCHEMES,
    },
    paths: { ...HEALTH_PATHS, ...SIGNED_PATHS, ...METRICS_PATH },
  }
}
