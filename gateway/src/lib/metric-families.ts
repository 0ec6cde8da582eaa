/**
 * Every metric the gateway exports, declared once: name, help, type, label names and (for histograms) bucket
 * bounds. The registry Durable Object stores their values; /metrics renders them.
 * @module
 */

/** Latency buckets (ms) from a warm CPU runner (~1 ms) up to a long cold start (60 s). */
const LATENCY_BUCKETS_MS = [
  1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
]

export interface MetricDef {
  help: string
  type: 'counter' | 'gauge' | 'histogram'
  labels: readonly string[]
  buckets?: readonly number[]
}

export const METRIC_FAMILIES = {
  twinserve_gateway_requests_total: {
    help: 'Requests answered by the gateway, by route, model and HTTP status.',
    type: 'counter',
    labels: ['route', 'model', 'status'],
  },
  twinserve_gateway_request_duration_ms: {
    help: 'Time from arrival to response at the gateway (ms), including cold-start waits and retries.',
    type: 'histogram',
    labels: ['route', 'model'],
    buckets: LATENCY_BUCKETS_MS,
  },
  twinserve_gateway_runner_requests_total: {
    help: 'Attempts sent to runners, by runner, model and outcome.',
    type: 'counter',
    labels: ['runner', 'model', 'outcome'],
  },
  twinserve_gateway_runner_latency_ms: {
    help: 'Round-trip time of one attempt to a runner (ms).',
    type: 'histogram',
    labels: ['runner', 'model'],
    buckets: LATENCY_BUCKETS_MS,
  },
  twinserve_gateway_retries_total: {
    help: 'Attempts beyond the first (failover to another runner), by model.',
    type: 'counter',
    labels: ['model'],
  },
  twinserve_gateway_cold_starts_total: {
    help: 'Requests that found no runner for their model and waited, by result (served | timed_out).',
    type: 'counter',
    labels: ['model', 'result'],
  },
  twinserve_gateway_cold_start_wait_ms: {
    help: 'How long requests waited for a runner to register (ms).',
    type: 'histogram',
    labels: ['model'],
    buckets: LATENCY_BUCKETS_MS,
  },
  twinserve_gateway_cold_start_waiting: {
    help: 'Requests waiting now for a runner to register for their model: the scale-from-zero signal.',
    type: 'gauge',
    labels: ['model'],
  },
  twinserve_gateway_rejections_total: {
    help: 'Requests refused at the edge, by reason (unauthenticated, forbidden, rate_limited, quota, invalid).',
    type: 'counter',
    labels: ['reason', 'tenant'],
  },
  twinserve_gateway_runner_events_total: {
    help: 'Membership and health events, by kind (register, heartbeat, deregister, expire, breaker_open).',
    type: 'counter',
    labels: ['event'],
  },
  twinserve_gateway_runners: {
    help: 'Registered live runners, by state (ready | loading | draining).',
    type: 'gauge',
    labels: ['state'],
  },
  twinserve_gateway_runner_outstanding: {
    help: 'Requests in flight at each runner from the gateway isolate that answered this scrape.',
    type: 'gauge',
    labels: ['runner'],
  },
  twinserve_gateway_runner_breaker_open: {
    help: 'Whether the answering isolate has the runner’s circuit breaker open (1) or not (0).',
    type: 'gauge',
    labels: ['runner'],
  },
} as const satisfies Record<string, MetricDef>

export type MetricName = keyof typeof METRIC_FAMILIES
