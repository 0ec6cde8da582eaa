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
  | 'feedback'
  | 'admin'
  | 'metrics'

/** What a request did, filled in by the middleware and handlers it passes through. */
export class RequestLog {
  /** Metric label for the route; requests without one (health, docs, runner calls) are logged, not counted. */
  route: RouteLabel | undefined
  model = ''
  tenant = ''
  keyId: string | undefined
  runnerId: string | undefined
  attempts = 0
  errorCode: ErrorCode | undefined
  coldStart: { waited_ms: number; result: 'served' | 'timed_out' } | undefined
  rejection: string | undefined

  setError(code: ErrorCode): void {
    this.errorCode = code
  }

  reject(reason: string): void {
    this.rejection = reason
  }
}
