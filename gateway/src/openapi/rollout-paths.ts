/**
 * The versioned-rollout part of the gateway's OpenAPI document (rollouts/): the admin API and the header the
 * inference route answers under a rollout.
 * @module
 */
import {
  componentSchemas,
  errorContent as error,
  type Json,
  jsonContent as json,
  MODEL_VERSION_HEADER,
  RolloutListSchema,
  RolloutSchema,
  schemaRef as ref,
  SetRolloutRequestSchema,
} from '@twinserve/shared'
import { keyErrors, keySecurity } from './doc-common.ts'

export function rolloutComponents(): Record<string, Json> {
  return {
    ...componentSchemas(
      { SetRolloutRequest: SetRolloutRequestSchema },
      'input',
      'RolloutInputShared_',
    ),
    ...componentSchemas(
      { Rollout: RolloutSchema, RolloutList: RolloutListSchema },
      'output',
      'RolloutOutputShared_',
    ),
  }
}

/** Response header of an inference served under a model's rollout. */
export const rolloutInferHeaders: Json = {
  [MODEL_VERSION_HEADER]: {
    description:
      'The package version that served the request, when the model has a rollout (its stable or canary version).',
    schema: { type: 'string' },
  },
}

export function rolloutPaths(): Json {
  const modelParam = { name: 'model', in: 'path', required: true, schema: { type: 'string' } }
  const admin = (summary: string, op: Json): Json => ({
    tags: ['rollouts'],
    summary,
    security: keySecurity,
    parameters: [modelParam],
    ...op,
  })
  const answers = (ok: string, more: Json = {}): Json => ({
    '200': json('Rollout', ok),
    '400': error(
      'Invalid model name or body, or a stable version no runner has announced; the message names the field.',
    ),
    ...more,
    ...keyErrors,
  })
  return {
    '/admin/models/{model}/rollout': {
      put: admin('Set the model’s rollout: stable version, canary version and share, guardrails', {
        description:
          'Callers (API key, narrowed by x-twinserve-user when sent) are assigned stickily to the canary for canary_percent of the buckets; a canary crossing a guardrail (or erring significantly more than stable in the always-valid test) is rolled back by the gateway itself. Changing only canary_percent keeps the rollout (its id and counts); a new stable or canary version starts a new one.',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: ref('SetRolloutRequest') } },
        },
        responses: answers('The rollout, active.', {
          '404': error('No runner serves or has served the model.'),
        }),
      }),
      get: admin('The model’s rollout: state, per-arm requests, errors, latency, p-value, reason', {
        responses: answers('The rollout.', { '404': error('The model has no rollout.') }),
      }),
    },
    '/admin/models/{model}/rollout/promote': {
      post: admin('Promote the canary: it becomes the stable version and serves everyone', {
        responses: answers('The rollout, promoted.', {
          '404': error('The model has no rollout.'),
        }),
      }),
    },
    '/admin/models/{model}/rollout/rollback': {
      post: admin('Roll the canary back: everyone is served by the stable version', {
        responses: answers('The rollout, rolled back (unchanged if it was not active).', {
          '404': error('The model has no rollout.'),
        }),
      }),
    },
    '/admin/rollouts': {
      get: {
        tags: ['rollouts'],
        summary: 'Every model’s rollout (the dashboard reads it)',
        security: keySecurity,
        responses: { '200': json('RolloutList', 'Rollouts by model.'), ...keyErrors },
      },
    },
  }
}
