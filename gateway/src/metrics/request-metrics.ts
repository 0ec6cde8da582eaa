/**
 * A finished request's counters, into the isolate's metrics buffer (flushed to the registry object later): its
 * route's count and latency, retries, cold-start waits and refusals.
 * @module
 */
import type { RequestLog } from '../http/request-log-entry.ts'
import { metrics } from './metrics-flush.ts'

export function countRequest(rl: RequestLog, status: number, durationMs: number): void {
  if (rl.route !== undefined) {
    metrics.inc('twinserve_gateway_requests_total', {
      route: rl.route,
      model: rl.model,
      status: String(status),
    })
    metrics.observe(
      'twinserve_gateway_request_duration_ms',
      { route: rl.route, model: rl.model },
      durationMs,
    )
  }
  if (rl.attempts > 1)
    metrics.inc('twinserve_gateway_retries_total', { model: rl.model }, rl.attempts - 1)
  if (rl.coldStart) {
    metrics.inc('twinserve_gateway_cold_starts_total', {
      model: rl.model,
      result: rl.coldStart.result,
    })
    metrics.observe(
      'twinserve_gateway_cold_start_wait_ms',
      { model: rl.model },
      rl.coldStart.waited_ms,
    )
  }
  if (rl.rejection)
    metrics.inc('twinserve_gateway_rejections_total', { reason: rl.rejection, tenant: rl.tenant })
}
