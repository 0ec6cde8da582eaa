/**
 * The Open Inference Protocol part of the gateway's OpenAPI document: health, server metadata and the model
 * routes (routing/).
 * @module
 */
import {
  errorContent as error,
  type Json,
  jsonContent as json,
  schemaRef as ref,
} from '@twinserve/shared'
import {
  deadlineParam,
  keyErrors,
  keySecurity,
  modelParam,
  routedErrors,
  routedHeaders,
} from './doc-common.ts'
import { experimentInferHeaders, experimentInferParameters } from './experiment-paths.ts'
import { rolloutInferHeaders } from './rollout-paths.ts'

const versionParam: Json = {
  name: 'version',
  in: 'path',
  required: true,
  description: "A package version id, as the model metadata's `versions` lists it.",
  schema: { type: 'string' },
}

/** A GET proxied to a runner holding the model. */
function proxied(summary: string, schemaId: string, params: Json[]): Json {
  return {
    get: {
      tags: ['inference'],
      summary,
      security: keySecurity,
      parameters: [...params, deadlineParam],
      responses: {
        '200': { ...json(schemaId, summary), headers: routedHeaders },
        '400': error('Invalid model name.'),
        '404': error('No runner serves or has served the model, or it has no such version.'),
        ...keyErrors,
        ...routedErrors,
      },
    },
  }
}

export const INFERENCE_PATHS: Json = {
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
        'JSON, or the binary tensor extension (a JSON header of `Inference-Header-Content-Length` bytes, then raw little-endian tensors); Content-Type may be absent, application/json or application/octet-stream; Content-Encoding gzip or deflate. Validated (the JSON header against the schema, each tensor against its shape and datatype, merge controls in `parameters`) before anything is forwarded; binary tensors are forwarded as sent. A model no runner serves or has served is a 404 at once; for one that was served, waits up to COLD_START_WAIT_MS for a runner. Answers are never compressed (`Cache-Control: no-transform`).',
      security: keySecurity,
      parameters: [modelParam, deadlineParam, ...experimentInferParameters],
      requestBody: {
        required: true,
        content: {
          'application/json': { schema: ref('InferenceRequest') },
          'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
        },
      },
      responses: {
        '200': {
          description: 'The runner’s answer: JSON, or a JSON header and binary outputs.',
          content: {
            'application/json': { schema: ref('InferenceResponse') },
            'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
          },
          headers: { ...routedHeaders, ...experimentInferHeaders, ...rolloutInferHeaders },
        },
        '400': error('Malformed body, tensor or merge control (INVALID_REQUEST).'),
        '404': error('No runner serves or has served the model; unknown version or expert.'),
        '413': error('Body larger than MAX_BODY_BYTES (inflated too).'),
        '415': error('Content-Type or Content-Encoding not read here.'),
        ...keyErrors,
        ...routedErrors,
      },
    },
  },
  '/v2/models/{model}/config': proxied("Triton's model configuration", 'ModelConfig', [modelParam]),
  '/v2/models/{model}/stats': proxied(
    "Triton's inference statistics (from one runner holding the model)",
    'InferenceStatistics',
    [modelParam],
  ),
  '/v2/models/{model}/versions/{version}': proxied('Model metadata at a version', 'ModelMetadata', [
    modelParam,
    versionParam,
  ]),
  '/v2/models/{model}/versions/{version}/config': proxied(
    "Triton's model configuration at a version",
    'ModelConfig',
    [modelParam, versionParam],
  ),
  '/v2/models/{model}/versions/{version}/stats': proxied(
    "Triton's inference statistics at a version",
    'InferenceStatistics',
    [modelParam, versionParam],
  ),
  '/v2/models/stats': {
    get: {
      tags: ['inference'],
      summary:
        "Triton's inference statistics of every model the key covers that a runner holds now",
      security: keySecurity,
      responses: { '200': json('InferenceStatistics', 'Statistics.'), ...keyErrors },
    },
  },
  '/v2/repository/index': {
    post: {
      tags: ['inference'],
      summary:
        'The model catalog: every model a runner serves or has served that the key covers (READY or UNAVAILABLE)',
      security: keySecurity,
      responses: { '200': json('RepositoryIndex', 'Models.'), ...keyErrors },
    },
  },
}

// The versioned forms of ready and infer document the same operations with the version parameter.
const versioned = (op: Json): Json =>
  Object.fromEntries(
    Object.entries(op).map(([method, o]) => {
      const operation = o as Json & { parameters?: Json[] }
      const params = operation.parameters ?? []
      const at = params.indexOf(modelParam) + 1
      return [
        method,
        { ...operation, parameters: [...params.slice(0, at), versionParam, ...params.slice(at)] },
      ]
    }),
  )
INFERENCE_PATHS['/v2/models/{model}/versions/{version}/ready'] = versioned(
  INFERENCE_PATHS['/v2/models/{model}/ready'] as Json,
)
INFERENCE_PATHS['/v2/models/{model}/versions/{version}/infer'] = versioned(
  INFERENCE_PATHS['/v2/models/{model}/infer'] as Json,
)
