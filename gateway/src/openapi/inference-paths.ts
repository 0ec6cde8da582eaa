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
}
