/**
 * What a request did, collected while it passes through middleware and handlers, for its access-log line and its
 * counters (http/request-log.ts, metrics/request-metrics.ts).
 * @module
 */
import type { ErrorCode } from '@twinserve/shared'

/** The `route` label of twinserve_gateway_requests_total: one per group of key-guarded routes (guard.ts). */
export type RouteLabel =
  | 'infer'
  | 'model_metadata'
  | 'model_ready'
  /** Text generation: /v1/completions, /v1/chat/completions, /v2/models/{m}/generate[_stream]. */
  | 'generate'
  | 'feedback'
  | 'admin'
  | 'metrics'

/** What a request did, filled in by the middleware and handlers it passes through. */
export class RequestLog {
  /** Metric label for the route; requests without one (health, docs, runner calls) are logged, not counted. */
  route: RouteLabel | undefined
  /** The `:model` path parameter as sent (cut to 128 characters), for the log line. */
  model = ''
  /** The authenticated key covers `model` (set by the auth middleware). */
  modelAuthorized = false
  /** …and names it explicitly (not through `*`). */
  keyNamesModel = false
  tenant = ''
  keyId: string | undefined
  runnerId: string | undefined
  attempts = 0
  errorCode: ErrorCode | undefined
  coldStart: { waited_ms: number; result: 'served' | 'timed_out' } | undefined
  rejection: string | undefined
  /** The answering runner's routing summary (ROUTING_SUMMARY_HEADER), for the per-expert counters. */
  routing: string | undefined

  setError(code: ErrorCode): void {
    this.errorCode = code
  }

  reject(reason: string): void {
    this.rejection = reason
  }
}

/** Caller-chosen model names that are not known collapse into this one label value. */
export const OTHER_MODEL_LABEL = 'other'

/**
 * The `model` label of the request's counters (issue #16, case 4: unauthenticated calls to
 * /v2/models/<any name>/infer added a label series per name). A model becomes a label value only when the caller
 * was authenticated for it and it is known: a runner has registered it (`knows`) or the key names it. Any other
 * name is counted under `other`; routes without a model have ''.
 */
export function modelLabel(rl: RequestLog, knows: (model: string) => boolean): string {
  if (!rl.model) return ''
  return rl.modelAuthorized && (rl.keyNamesModel || knows(rl.model)) ? rl.model : OTHER_MODEL_LABEL
}
