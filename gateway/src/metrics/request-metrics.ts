/**
 * A finished request's counters, into the isolate's metrics buffer (flushed to the registry object later): its
 * route's count and latency, retries, cold-start waits and refusals.
 * @module
 */
import { parseRoutingSummary } from '@twinserve/shared'
import { modelLabel, OTHER_MODEL_LABEL, type RequestLog } from '../http/request-log-entry.ts'
import { metrics } from './metrics-flush.ts'

/**
 * @param knows whether a runner has registered a model (only known models become label values)
 * @param knowsExpert whether a runner has registered the expert for the model (only those become `expert` values)
 */
export function countRequest(
  rl: RequestLog,
  status: number,
  durationMs: number,
  knows: (model: string) => boolean,
  knowsExpert: (model: string, expert: string) => boolean = () => false,
): void {
  const model = modelLabel(rl, knows)
  if (rl.routing !== undefined && status === 200 && model !== '' && model !== OTHER_MODEL_LABEL)
    countRouting(model, rl.routing, knowsExpert)
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

/** One routed answer's summary into the per-expert counters; a malformed summary counts nothing. */
function countRouting(
  model: string,
  header: string,
  knowsExpert: (model: string, expert: string) => boolean,
): void {
  const s = parseRoutingSummary(header)
  if (!s || s.rows === 0) return
  metrics.inc('twinserve_gateway_routed_rows_total', { model }, s.rows)
  if (s.abstained > 0)
    metrics.inc('twinserve_gateway_router_abstentions_total', { model }, s.abstained)
  metrics.inc('twinserve_gateway_router_entropy_sum', { model }, s.entropySum)
  for (const e of s.experts) {
    if (!knowsExpert(model, e.name)) continue
    metrics.inc(
      'twinserve_gateway_expert_routed_rows_total',
      { model, expert: e.name },
      e.routedRows,
    )
    metrics.inc(
      'twinserve_gateway_expert_routed_weight_sum',
      { model, expert: e.name },
      e.weightSum,
    )
  }
}
