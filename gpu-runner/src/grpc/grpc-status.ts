/**
 * AppError → gRPC status: one total table beside the HTTP one (shared/src/errors.ts), so a new error code does
 * not compile until it has a gRPC status too. Statuses follow gRPC's own HTTP mapping where one exists
 * (doc/http-grpc-status-mapping.md): a caller's mistake is INVALID_ARGUMENT / NOT_FOUND / …, never INTERNAL.
 * @module
 */
import { Metadata, type ServiceError, status } from '@grpc/grpc-js'
import { type ErrorCode, REQUEST_ID_HEADER, toAppError } from '@twinserve/shared'

export const GRPC_STATUS_OF: Record<ErrorCode, status> = {
  INVALID_REQUEST: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  FORBIDDEN: status.PERMISSION_DENIED,
  NOT_FOUND: status.NOT_FOUND,
  UNKNOWN_EXPERT: status.NOT_FOUND,
  METHOD_NOT_ALLOWED: status.UNIMPLEMENTED,
  REQUEST_TIMEOUT: status.DEADLINE_EXCEEDED,
  PAYLOAD_TOO_LARGE: status.RESOURCE_EXHAUSTED,
  UNSUPPORTED_MEDIA_TYPE: status.INVALID_ARGUMENT,
  // 422s: the request is well-formed but this input cannot be served; still the caller's to change.
  INCOMPATIBLE_EXPERTS: status.INVALID_ARGUMENT,
  INVALID_MODEL: status.INVALID_ARGUMENT,
  NON_FINITE_OUTPUT: status.INVALID_ARGUMENT,
  RATE_LIMITED: status.RESOURCE_EXHAUSTED,
  CLIENT_CLOSED: status.CANCELLED,
  RUNNER_OVERLOADED: status.UNAVAILABLE,
  NO_RUNNER: status.UNAVAILABLE,
  RUNNER_TIMEOUT: status.DEADLINE_EXCEEDED,
  BAD_GATEWAY: status.UNAVAILABLE,
  INSUFFICIENT_MEMORY: status.RESOURCE_EXHAUSTED,
  MERGE_FAILED: status.INTERNAL,
  INTERNAL: status.INTERNAL,
}

/** Trailing metadata keys: the shared error code and the request id, as the REST error body carries them. */
export const ERROR_CODE_KEY = 'twinserve-error-code'

/**
 * The gRPC error for anything thrown: its status from the table, the message (INTERNAL says only "internal
 * error", as REST does; the cause is logged), and the code, request id and Retry-After in trailing metadata.
 */
export function toServiceError(err: unknown, requestId: string): Partial<ServiceError> {
  const e = toAppError(err)
  const metadata = new Metadata()
  metadata.set(ERROR_CODE_KEY, e.code)
  metadata.set(REQUEST_ID_HEADER, requestId)
  if (e.retryAfter !== undefined) metadata.set('retry-after', String(e.retryAfter))
  return {
    code: GRPC_STATUS_OF[e.code],
    details: `${e.message} (request_id ${requestId})`,
    metadata,
  }
}
