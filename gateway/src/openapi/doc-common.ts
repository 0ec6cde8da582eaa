/**
 * Pieces of the gateway's OpenAPI document every part uses: headers, parameters, the errors of key-guarded and
 * routed calls, the security requirements.
 * @module
 */
import {
  DEADLINE_HEADER,
  errorContent as error,
  type Json,
  REQUEST_ID_HEADER,
} from '@twinserve/shared'
import { RATE_LIMIT_REMAINING_HEADER } from '../rate-limit/rate-limit.ts'
import { RUNNER_HEADER } from '../routing/route-request.ts'

export const requestIdHeader = {
  [REQUEST_ID_HEADER]: {
    description:
      "The request's id (the caller's if it sent a safe one), also in logs and error bodies.",
    schema: { type: 'string' },
  },
}
export const retryAfter = {
  'retry-after': { description: 'Seconds to wait.', schema: { type: 'integer' } },
}

export const modelParam: Json = {
  name: 'model',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' },
}

/** Errors every key-authenticated route can answer. */
export const keyErrors: Json = {
  '401': error('Missing, unknown or revoked API key (UNAUTHENTICATED).'),
  '403': error('The key lacks the scope or does not cover the model (FORBIDDEN).'),
  '429': {
    ...error('Rate limit or daily quota of the key exceeded (RATE_LIMITED).'),
    headers: retryAfter,
  },
}
export const routedErrors: Json = {
  '502': error('A runner answered with something that is not the protocol (BAD_GATEWAY).'),
  '503': {
    ...error(
      'No runner holds the model after the cold-start wait, or every runner tried failed (NO_RUNNER); or the runners are overloaded (RUNNER_OVERLOADED).',
    ),
    headers: retryAfter,
  },
  '504': error('The request deadline passed (RUNNER_TIMEOUT).'),
}
export const routedHeaders = {
  ...requestIdHeader,
  [RUNNER_HEADER]: { description: 'The runner that answered.', schema: { type: 'string' } },
  [RATE_LIMIT_REMAINING_HEADER]: {
    description: "Tokens left in the key's bucket.",
    schema: { type: 'integer' },
  },
}
export const deadlineParam: Json = {
  name: DEADLINE_HEADER,
  in: 'header',
  required: false,
  description: 'Give up after this many ms (capped by the gateway’s REQUEST_DEADLINE_MS).',
  schema: { type: 'integer', minimum: 1 },
}
export const keySecurity = [{ apiKey: [] }]
export const runnerSecurity = [
  { runnerSignature: [], runnerTimestamp: [], runnerNonce: [], runnerContentSha256: [] },
]
