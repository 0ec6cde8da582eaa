/**
 * Every error a caller sees goes through here: an AppError (or Hono HTTPException) becomes the shared error body
 * `{ error, code, request_id }` with the status from ERROR_CODES and Retry-After where it applies; anything else
 * is INTERNAL, with its cause logged beside the request id and never sent.
 * @module
 */
import {
  AppError,
  ERROR_CODES,
  type ErrorBody,
  type ErrorCode,
  methodNotAllowed,
  toAppError,
} from '@twinserve/shared'
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { AppEnv } from '../app-env.ts'
import { errorFields, log } from '../util/log.ts'

const CODE_BY_STATUS = new Map<number, ErrorCode>()
for (const [code, status] of Object.entries(ERROR_CODES) as Array<[ErrorCode, number]>)
  if (!CODE_BY_STATUS.has(status)) CODE_BY_STATUS.set(status, code)

/** The first code in the table with this status (INVALID_REQUEST / INTERNAL for unlisted 4xx / 5xx). */
export function codeForStatus(status: number): ErrorCode {
  return CODE_BY_STATUS.get(status) ?? (status < 500 ? 'INVALID_REQUEST' : 'INTERNAL')
}

function fromHttpException(e: HTTPException): AppError {
  const code = codeForStatus(e.status)
  return new AppError(code, e.message || `HTTP ${e.status}`, { cause: e })
}

export function errorResponse(
  c: Context<AppEnv>,
  err: unknown,
  extraHeaders: Record<string, string> = {},
): Response {
  const appError = err instanceof HTTPException ? fromHttpException(err) : toAppError(err)
  const requestId = c.get('requestId')
  if (appError.status >= 500 && appError.code === 'INTERNAL')
    log('error', 'internal_error', {
      request_id: requestId,
      message: appError.message,
      ...errorFields(appError.cause ?? appError),
    })
  c.get('requestLog')?.setError(appError.code)
  const body: ErrorBody = { error: appError.message, code: appError.code, request_id: requestId }
  const headers: Record<string, string> = { ...extraHeaders }
  if (appError.retryAfter !== undefined) headers['retry-after'] = String(appError.retryAfter)
  return c.json(body, appError.status as ContentfulStatusCode, headers)
}

/** hono's methodNotAllowed hook: a known path called with another method (the same answer as the runner's). */
export function methodNotAllowedResponse(c: Context<AppEnv>, allowed: string[]): Response {
  const { error, headers } = methodNotAllowed(c.req.method, c.req.path, allowed)
  return errorResponse(c, error, headers)
}
