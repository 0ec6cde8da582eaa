/**
 * Every error a caller of the runner sees: `{error, code, request_id}` with the status of its code in the shared
 * table, Retry-After where it applies; anything unexpected is logged beside the request id and sent as INTERNAL.
 * @module
 */
import {
  AppError,
  type ErrorBody,
  methodNotAllowed,
  REQUEST_ID_HEADER,
  requestIdFrom,
  toAppError,
} from '@twinserve/shared'
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { errorFields, type Logger } from './logger.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'

function fromHttpException(err: HTTPException): AppError {
  return new AppError(err.status === 413 ? 'PAYLOAD_TOO_LARGE' : 'INVALID_REQUEST', err.message)
}

export function errorResponse(
  c: Context<RunnerAppEnv>,
  err: unknown,
  logger: Logger,
  extraHeaders: Record<string, string> = {},
): Response {
  const e = err instanceof HTTPException ? fromHttpException(err) : toAppError(err)
  // Set by the first middleware; an error before it (none is known) still gets an id to quote.
  const requestId = c.get('requestId') ?? requestIdFrom(undefined)
  if (e.code === 'INTERNAL' || e.code === 'MERGE_FAILED')
    logger.error('unexpected error', {
      request_id: requestId,
      path: c.req.path,
      ...errorFields(err),
    })
  const body: ErrorBody = { error: e.message, code: e.code, request_id: requestId }
  const headers: Record<string, string> = { ...extraHeaders, [REQUEST_ID_HEADER]: requestId }
  if (e.retryAfter !== undefined) headers['retry-after'] = String(e.retryAfter)
  return c.json(body, e.status as 400, headers)
}

/** hono's methodNotAllowed hook: the same 405 the gateway answers (shared/src/http.ts). */
export function methodNotAllowedResponse(
  c: Context<RunnerAppEnv>,
  allowed: string[],
  logger: Logger,
): Response {
  const { error, headers } = methodNotAllowed(c.req.method, c.req.path, allowed)
  return errorResponse(c, error, logger, headers)
}
