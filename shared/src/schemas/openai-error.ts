/**
 * Errors on the gateway's OpenAI-compatible routes (`/v1/completions`, `/v1/chat/completions`, `/v1/models`),
 * in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so that the official clients raise
 * their typed errors (`BadRequestError`, `RateLimitError`, …) with our message. `code` is our code from the
 * shared table (ERROR_CODES) and `request_id` sits beside `error`, as in every other error body of ours.
 *
 * The runner's /v1 routes answer in the shared `{error, code, request_id}` body (schemas/error.ts); the gateway
 * translates that one to this one, keeping message, code and status.
 * @see https://platform.openai.com/docs/guides/error-codes
 * @module
 */
import { z } from 'zod'
import { ErrorCodeSchema } from './error.ts'

export const OpenAIErrorTypeSchema = z.enum([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'rate_limit_error',
  'server_error',
])
export type OpenAIErrorType = z.infer<typeof OpenAIErrorTypeSchema>

export const OpenAIErrorBodySchema = z.object({
  error: z.object({
    message: z.string(),
    type: OpenAIErrorTypeSchema,
    param: z.string().nullable(),
    code: ErrorCodeSchema,
  }),
  request_id: z.string().optional(),
})
export type OpenAIErrorBody = z.infer<typeof OpenAIErrorBodySchema>

/** OpenAI's error `type` for an HTTP status. */
export function openAIErrorType(status: number): OpenAIErrorType {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  return status < 500 ? 'invalid_request_error' : 'server_error'
}
