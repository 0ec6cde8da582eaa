/**
 * The one closed table of error codes that every Twinserve component speaks, mapped to HTTP status.
 * Adding a code is a deliberate change here; nothing else invents statuses.
 * @module
 */

export const ERROR_CODES = {
  /** The request body, a parameter or a tensor is malformed. */
  INVALID_REQUEST: 400,
  /** Missing, unknown or revoked credentials, or a bad signature. */
  UNAUTHENTICATED: 401,
  /** Valid credentials that do not cover this scope or model. */
  FORBIDDEN: 403,
  /** No such model, version or route. */
  NOT_FOUND: 404,
  /** The merge names an expert the model does not have. */
  UNKNOWN_EXPERT: 404,
  /** The method is not allowed on this path. */
  METHOD_NOT_ALLOWED: 405,
  /** The request body did not arrive within the body-read deadline (a trickled or stalled upload). */
  REQUEST_TIMEOUT: 408,
  /** The body is larger than the server accepts. */
  PAYLOAD_TOO_LARGE: 413,
  /** A Content-Type or Content-Encoding this endpoint does not read. */
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** Experts or models whose tensors do not line up (shapes, graphs). */
  INCOMPATIBLE_EXPERTS: 422,
  /** Numbers that cannot be merged (NaN, Inf) or a build input that fails its checks. */
  INVALID_MODEL: 422,
  /**
   * The model computed NaN or ±Infinity for this input (float32 overflow on extreme values): the answer names
   * the rows and outputs. It is the input's doing, so it is a 4xx, never a runner fault.
   */
  NON_FINITE_OUTPUT: 422,
  /** The caller exceeded its rate limit or quota. */
  RATE_LIMITED: 429,
  /**
   * The client hung up before the answer (nginx's 499). Recorded in logs and metrics, never sent: there is
   * nobody left to send it to. Not a server fault.
   */
  CLIENT_CLOSED: 499,
  /** The runner's queue is full or it is draining. */
  RUNNER_OVERLOADED: 503,
  /** No runner holds the model (cold start deadline passed) or all failed. */
  NO_RUNNER: 503,
  /** The request's deadline passed before it was served. */
  RUNNER_TIMEOUT: 504,
  /** A runner answered with something that is not a valid response. */
  BAD_GATEWAY: 502,
  /**
   * Loading a model version would not fit in the runner's memory beside what it holds (hot swap keeps the old
   * version until its requests finish): nothing was loaded, the versions served are unchanged.
   */
  INSUFFICIENT_MEMORY: 507,
  /** A merge failed on data that passed validation. */
  MERGE_FAILED: 500,
  /** Anything unexpected; the cause is logged beside the request id, never sent. */
  INTERNAL: 500,
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value)
}

export function httpStatusOf(code: ErrorCode): (typeof ERROR_CODES)[ErrorCode] {
  return ERROR_CODES[code]
}

/** A failure with a code from the table; everything that reaches a caller is one of these. */
export class AppError extends Error {
  override readonly name = 'AppError'
  readonly code: ErrorCode
  /** Seconds, sent as Retry-After where the status calls for it (429, 503). */
  readonly retryAfter?: number

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfter?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    if (options?.retryAfter !== undefined) this.retryAfter = options.retryAfter
  }

  get status(): number {
    return ERROR_CODES[this.code]
  }
}

/** Wraps anything thrown as an AppError, keeping the original as `cause` (trpc's getTRPCErrorFromUnknown). */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err
  return new AppError('INTERNAL', 'internal error', { cause: err })
}
