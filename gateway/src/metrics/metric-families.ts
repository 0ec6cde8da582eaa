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

// Constructors keep each family's type and label names as literal types (metrics-store.ts derives label
// records and histogram names from them).
const counter = <const L extends readonly string[]>(help: string, labels: L) =>
  ({ help, type: 'counter', labels }) as const
const gauge = <const L extends readonly string[]>(help: string, labels: L) =>
  ({ help, type: 'gauge', labels }) as const
const latencyHistogram = <const L extends readonly string[]>(help: string, labels: L) =>
  ({ help, type: 'histogram', labels, buckets: LATENCY_BUCKETS_MS }) as const

export const METRIC_FAMILIES = {
  twinserve_gateway_requests_total: counter(
    'Requests answered by the gateway, by route, model and HTTP status.',
    ['route', 'model', 'status'],
  ),
  twinserve_gateway_request_duration_ms: latencyHistogram(
    'Time from arrival to response at the gateway (ms), including cold-start waits and retries.',
    ['route', 'model'],
  ),
  twinserve_gateway_runner_requests_total: counter(
    'Attempts sent to runners, by runner, model and outcome.',
    ['runner', 'model', 'outcome'],
  ),
  twinserve_gateway_runner_latency_ms: latencyHistogram(
    'Round-trip time of one attempt to a runner (ms).',
    ['runner', 'model'],
  ),
  twinserve_gateway_retries_total: counter(
    'Attempts beyond the first (failover to another runner), by model.',
    ['model'],
  ),
  twinserve_gateway_cold_starts_total: counter(
    'Requests that found no runner for their model and waited, by result (served | timed_out).',
    ['model', 'result'],
  ),
  twinserve_gateway_cold_start_wait_ms: latencyHistogram(
    'How long requests waited for a runner to register (ms).',
    ['model'],
  ),
  twinserve_gateway_cold_start_waiting: gauge(
    'Requests waiting now for a runner to register for their model: the scale-from-zero signal.',
    ['model'],
  ),
  twinserve_gateway_rejections_total: counter(
    'Requests refused at the edge, by reason (unauthenticated, forbidden, rate_limited, quota, invalid).',
    ['reason', 'tenant'],
  ),
  twinserve_gateway_runner_events_total: counter(
    'Membership and health events, by kind (register, heartbeat, deregister, expire, breaker_open).',
    ['event'],
  ),
  twinserve_gateway_rollout_rollbacks_total: counter(
    'Canaries rolled back automatically by a guardrail or the always-valid test (issue #19), by model.',
    ['model'],
  ),
  twinserve_gateway_runners: gauge(
    'Registered live runners, by state (ready | loading | draining).',
    ['state'],
  ),
  twinserve_gateway_runner_outstanding: gauge(
    'Requests in flight at each runner from the gateway isolate that answered this scrape.',
    ['runner'],
  ),
  twinserve_gateway_runner_breaker_open: gauge(
    'Whether the answering isolate has the runner’s circuit breaker open (1) or not (0).',
    ['runner'],
  ),
  // Generation (issue 14): the tokens of answered completions, as the per-key token limit charges them. Labels: a
  // model a runner answered for, and the key's tenant (admin-created: a bounded set).
  twinserve_gateway_generation_tokens_total: counter(
    'Tokens of generation answers, by model, tenant and kind (prompt, completion; a stream without usage counts its text chunks as completion).',
    ['model', 'tenant', 'kind'],
  ),
  // Per-expert routing (issue #19), from the runners' routing summaries of routed infer answers. Labels: models
  // a runner registered and the caller was authenticated for, experts a runner registered for that model.
  twinserve_gateway_routed_rows_total: counter(
    'Rows whose experts the router weighed, by model (explicit mixes, variants and fan-outs excluded).',
    ['model'],
  ),
  twinserve_gateway_expert_routed_rows_total: counter(
    'Routed rows that gave this expert a weight above 0.1 (its traffic share, over routed_rows_total).',
    ['model', 'expert'],
  ),
  twinserve_gateway_expert_routed_weight_sum: counter(
    "Sum of this expert's routed weight (its mean weight, over routed_rows_total).",
    ['model', 'expert'],
  ),
  twinserve_gateway_router_entropy_sum: counter(
    "Sum of routed rows' weight entropy in nats (÷ routed rows less abstentions: the mean entropy).",
    ['model'],
  ),
  twinserve_gateway_routing_drift: gauge(
    "Each runner's routing drift for a model (0..1, total variation from the package's build-time routing), from its last heartbeat.",
    ['model', 'runner'],
  ),
  twinserve_gateway_router_abstentions_total: counter(
    'Routed rows the router was too unsure for (the shared model answered them).',
    ['model'],
  ),
} satisfies Record<string, MetricDef>

export type MetricName = keyof typeof METRIC_FAMILIES
