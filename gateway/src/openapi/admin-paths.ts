/**
 * The operations part of the gateway's OpenAPI document: the key and runner admin API, metrics (auth/, routing/,
 * metrics/) and the runners' signed membership calls.
 * @module
 */
import {
  errorContent as error,
  type Json,
  jsonContent as json,
  RUNNER_REGISTRY_PATHS,
  schemaRef as ref,
} from '@twinserve/shared'
import { keyErrors, keySecurity, runnerSecurity } from './doc-common.ts'

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

export const ADMIN_PATHS: Json = {
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
}

export const MEMBERSHIP_PATHS: Json = {
  [RUNNER_REGISTRY_PATHS.register]: membership('RunnerRegistration', 'A runner joins'),
  [RUNNER_REGISTRY_PATHS.heartbeat]: membership(
    'RunnerRegistration',
    'A runner reports its state and load',
  ),
  [RUNNER_REGISTRY_PATHS.deregister]: membership('RunnerDeregistration', 'A runner leaves'),
}
