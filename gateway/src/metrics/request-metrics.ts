/**
 * A finished request's counters, into the isolate's metrics buffer (flushed to the registry object later): its
 * route's count and latency, retries, cold-start waits and refusals.
 * @module
 */
import { modelLabel, type RequestLog } from '../http/request-log-entry.ts'
import { metrics } from './metrics-flush.ts'

/** @param knows whether a runner has registered a model (only known models become label values) */
export function countRequest(
  rl: RequestLog,
  status: number,
  durationMs: number,
  knows: (model: string) => boolean,
): void {
  const model = modelLabel(rl, knows)
  if (rl.route !== undefined) {
    metrics.inc('twinserve_gateway_requests_total', {
      route: rl.route,
      model,
      status: String(status),
    })
    metrics.observe('twinserve_gateway_request_duration_ms', { route: rl.route, model }, durationMs)
  }
  if (rl.attempts > 1) metrics.inc('twinserve_gateway_retries_total', { model }, rl.attempts - 1)
  if (rl.coldStart) {
    metrics.inc('twinserve_gateway_cold_starts_total', {
      model,
      result: rl.coldStart.result,
    })
    metrics.observe('twinserve_gateway_cold_start_wait_ms', { model }, rl.coldStart.waited_ms)
  }
  if (rl.rejection)
    metrics.inc('twinserve_gateway_rejections_total', { reason: rl.rejection, tenant: rl.tenant })
}
