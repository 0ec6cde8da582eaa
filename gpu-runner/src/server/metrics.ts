/**
 * Prometheus metrics of one runner (prom-client, on a registry of its own so that several runners in one test
 * process do not share counters). Names are `twinserve_runner_*`; the queue-depth gauge is the autoscaling signal
 * (KEDA scales on it), so its name is part of the operations contract.
 *
 * | metric                                          | type      | labels                               |
 * | ----------------------------------------------- | --------- | ------------------------------------ |
 * | twinserve_runner_requests_total                 | counter   | model, variant, merge_path, code     |
 * | twinserve_runner_request_duration_seconds       | histogram | model, variant, merge_path           |
 * | twinserve_runner_batch_rows                     | histogram | model                                |
 * | twinserve_runner_batch_requests                 | histogram | model                                |
 * | twinserve_runner_queue_depth                    | gauge     |                                      |
 * | twinserve_runner_in_flight                      | gauge     |                                      |
 * | twinserve_runner_queue_capacity                 | gauge     |                                      |
 * | twinserve_runner_rejected_total                 | counter   | reason (overloaded, draining, timeout) |
 * | twinserve_runner_abstained_rows_total           | counter   | model                                |
 * | twinserve_runner_merge_cache_lookups_total      | counter   | model, result (hit, miss)            |
 * | twinserve_runner_merge_cache_entries / _bytes   | gauge     | model                                |
 * | twinserve_runner_provider_info                  | gauge     | provider (1 for the one in use)      |
 * | twinserve_runner_draining                       | gauge     |                                      |
 * | twinserve_runner_model_versions                 | gauge     | model (versions loaded; 2 mid-swap)  |
 * | twinserve_runner_routed_rows_total              | counter   | model (rows the router weighed)      |
 * | twinserve_runner_expert_routed_rows_total       | counter   | model, expert (rows with weight > 0.1) |
 * | twinserve_runner_expert_routed_weight_sum       | counter   | model, expert (÷ routed_rows: mean weight) |
 * | twinserve_runner_router_entropy_nats            | histogram | model (per routed row, abstentions excluded) |
 * | twinserve_runner_router_abstentions_total       | counter   | model (rows the router left to the shared model) |
 * | twinserve_runner_routing_drift                  | gauge     | model (total variation from the build-time routing; |
 * |                                                 |           | packages with a routingProfile, once 100 rows came) |
 * | twinserve_runner_routing_drift_alert            | gauge     | model (1 while the drift is above --drift-alert) |
 * | twinserve_runner_generation_sequences           | gauge     | model, state (waiting, running)      |
 * | twinserve_runner_generation_kv_cache_bytes      | gauge     | model (reserved by admitted sequences) |
 * | twinserve_runner_generation_kv_cache_capacity_bytes | gauge | model (--kv-cache-mb)                |
 * | twinserve_runner_generation_decode_passes_total | counter   | model, path (factored, merged, baked) |
 * | twinserve_runner_generation_scoring_passes_total | counter  | model (prompts scored by likelihood) |
 * | twinserve_runner_generation_prompt_tokens_total | counter   | model (of finished sequences)        |
 * | twinserve_runner_generation_completion_tokens_total | counter | model (of finished sequences)     |
 * | twinserve_runner_generation_finished_total      | counter   | model, reason (stop, length, cancelled, error) |
 * | twinserve_runner_generation_time_to_first_token_seconds | histogram | model                     |
 * | twinserve_runner_generation_time_per_output_token_seconds | histogram | model (per sequence, after the first) |
 * (the generation series: generation-metrics.ts), plus prom-client's default process metrics (`twinserve_runner_process_*`, `twinserve_runner_nodejs_*`).
 * @module
 */

import type { RoutingProfile } from '@twinserve/shared'
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { type GenerationEngines, generationMetrics } from './generation-metrics.ts'
import { DRIFT_MIN_ROWS, RoutingDrift } from './routing-drift.ts'
import { summarizeRouting } from './routing-telemetry.ts'

export type RunnerMetrics = ReturnType<typeof createMetrics>

export function createMetrics(opts: {
  queueDepth: () => number
  inFlight: () => number
  capacity: number
  draining: () => boolean
  cache: () => { model: string; entries: number; bytes: number }[]
  /** Model names of every version loaded (one per version; a model mid-swap appears twice). */
  versions?: () => string[]
  drift?: DriftOptions
  /** The models the runner generates with (--generation) and their engines, read at scrape time. */
  generation?: GenerationEngines
}) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'twinserve_runner_' })
  const requests = new Counter({
    name: 'twinserve_runner_requests_total',
    help: 'Inference requests answered, by model, variant, merge path and HTTP status code.',
    labelNames: ['model', 'variant', 'merge_path', 'code'] as const,
    registers: [registry],
  })
  const duration = new Histogram({
    name: 'twinserve_runner_request_duration_seconds',
    help: 'Inference request latency from arrival to response (successful requests).',
    labelNames: ['model', 'variant', 'merge_path'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  })
  const batchRows = new Histogram({
    name: 'twinserve_runner_batch_rows',
    help: 'Rows per executed batch (dynamic batching).',
    labelNames: ['model'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [registry],
  })
  const batchRequests = new Histogram({
    name: 'twinserve_runner_batch_requests',
    help: 'Requests coalesced per executed batch.',
    labelNames: ['model'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [registry],
  })
  new Gauge({
    name: 'twinserve_runner_queue_depth',
    help: 'Requests waiting in the queue (the autoscaling signal).',
    registers: [registry],
    collect() {
      this.set(opts.queueDepth())
    },
  })
  new Gauge({
    name: 'twinserve_runner_in_flight',
    help: 'Requests inside executing batches.',
    registers: [registry],
    collect() {
      this.set(opts.inFlight())
    },
  })
  new Gauge({
    name: 'twinserve_runner_queue_capacity',
    help: 'Queue capacity; at capacity new requests get 503.',
    registers: [registry],
  }).set(opts.capacity)
  const rejected = new Counter({
    name: 'twinserve_runner_rejected_total',
    help: 'Requests refused for load: queue full (overloaded), draining, or deadline passed (timeout).',
    labelNames: ['reason'] as const,
    registers: [registry],
  })
  const abstainedRows = new Counter({
    name: 'twinserve_runner_abstained_rows_total',
    help: 'Router rows that abstained (less sure than their abstain threshold) and ran the shared model.',
    labelNames: ['model'] as const,
    registers: [registry],
  })
  const cacheLookups = new Counter({
    name: 'twinserve_runner_merge_cache_lookups_total',
    help: 'Materialised-merge cache lookups by result (hit, miss).',
    labelNames: ['model', 'result'] as const,
    registers: [registry],
  })
  const cacheGauges = [
    ['entries', 'Materialised merges held in the cache.'],
    ['bytes', 'Bytes of materialised merges held in the cache.'],
  ] as const
  for (const [field, help] of cacheGauges)
    new Gauge({
      name: `twinserve_runner_merge_cache_${field}`,
      help,
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        for (const c of opts.cache()) this.set({ model: c.model }, c[field])
      },
    })
  const provider = new Gauge({
    name: 'twinserve_runner_provider_info',
    help: 'Execution provider in use (1 for the provider in use).',
    labelNames: ['provider'] as const,
    registers: [registry],
  })
  new Gauge({
    name: 'twinserve_runner_draining',
    help: '1 while the runner drains after SIGTERM.',
    registers: [registry],
    collect() {
      this.set(opts.draining() ? 1 : 0)
    },
  })
  const { routing, drift } = routingMetrics(registry, opts.versions, opts.drift)
  const generationFinished = generationMetrics(registry, opts.generation ?? (() => []))
  return {
    registry,
    routing,
    /** A model's current routing drift (undefined: no profile, or too few rows yet). */
    drift,
    requests,
    duration,
    batchRows,
    batchRequests,
    rejected,
    abstainedRows,
    cacheLookups,
    provider,
    /** The `onFinish` of a model's generation engine (generation-metrics.ts). */
    generationFinished,
  }
}

export interface DriftOptions {
  /** Drift above this sets the alert gauge (and logs once when it trips). */
  alert: number
  /** Routed rows in the live window. */
  windowRows: number
  /** Called when a model's drift alert goes from 0 to 1. */
  onAlert?: (model: string, drift: number) => void
}

/**
 * Per-expert telemetry (issue #19) and the versions loaded per model (hot swap).
 * @returns `routing(model, experts, weights, current)`, which counts one request's routed rows ([rows, T]
 *   weights) and, for the current version with a build-time profile, feeds its drift window; `drift(model)`
 */
function routingMetrics(
  registry: Registry,
  versions: (() => string[]) | undefined,
  driftOpts: DriftOptions = { alert: 0.2, windowRows: 1000 },
) {
  new Gauge({
    name: 'twinserve_runner_model_versions',
    help: 'Versions of each model loaded: 2 while a replaced version finishes its requests after a hot swap.',
    labelNames: ['model'] as const,
    registers: [registry],
    collect() {
      this.reset()
      const counts = new Map<string, number>()
      for (const m of versions?.() ?? []) counts.set(m, (counts.get(m) ?? 0) + 1)
      for (const [model, n] of counts) this.set({ model }, n)
    },
  })
  const routedRows = new Counter({
    name: 'twinserve_runner_routed_rows_total',
    help: 'Rows whose experts the router weighed (explicit mixes, variants and fan-outs excluded).',
    labelNames: ['model'] as const,
    registers: [registry],
  })
  const expertRows = new Counter({
    name: 'twinserve_runner_expert_routed_rows_total',
    help: 'Routed rows that gave this expert a weight above 0.1 (its traffic share, over routed_rows_total).',
    labelNames: ['model', 'expert'] as const,
    registers: [registry],
  })
  const expertWeight = new Counter({
    name: 'twinserve_runner_expert_routed_weight_sum',
    help: "Sum of this expert's routed weight over routed rows (its mean weight, over routed_rows_total).",
    labelNames: ['model', 'expert'] as const,
    registers: [registry],
  })
  const entropy = new Histogram({
    name: 'twinserve_runner_router_entropy_nats',
    help: "Entropy (nats) of each routed row's applied expert weights; ln(experts) is uniform, 0 one expert.",
    labelNames: ['model'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3],
    registers: [registry],
  })
  const abstentions = new Counter({
    name: 'twinserve_runner_router_abstentions_total',
    help: 'Routed rows the router was too unsure for (abstain_below): the shared model answered them.',
    labelNames: ['model'] as const,
    registers: [registry],
  })
  // One window per model, for the version that serves its new requests: a new profile (a hot swap) starts afresh.
  const windows = new Map<string, RoutingDrift>()
  const alerting = new Set<string>()
  const driftOf = (model: string) => {
    const v = windows.get(model)?.value()
    if (v === undefined) return undefined
    const on = v > driftOpts.alert
    if (on && !alerting.has(model)) driftOpts.onAlert?.(model, v)
    if (on) alerting.add(model)
    else alerting.delete(model)
    return { value: v, alert: on }
  }
  // A model unloaded since (repository unload) reports no drift: its window is dropped at the next scrape.
  const liveWindows = (): string[] => {
    if (versions) {
      const loaded = new Set(versions())
      for (const model of windows.keys())
        if (!loaded.has(model)) {
          windows.delete(model)
          alerting.delete(model)
        }
    }
    return [...windows.keys()]
  }
  // The drift and its alert, per model with a live window; both read at scrape time.
  const driftGauge = (
    name: string,
    help: string,
    value: (d: NonNullable<ReturnType<typeof driftOf>>) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['model'] as const,
      registers: [registry],
      collect() {
        this.reset()
        for (const model of liveWindows()) {
          const d = driftOf(model)
          if (d) this.set({ model }, value(d))
        }
      },
    })
  driftGauge(
    'twinserve_runner_routing_drift',
    "Total variation distance (0..1) of the live routed weights (last routed rows) from the package's build-time routing on its routing data.",
    (d) => d.value,
  )
  driftGauge(
    'twinserve_runner_routing_drift_alert',
    'Whether the routing drift is above the --drift-alert threshold (1) or not (0).',
    (d) => (d.alert ? 1 : 0),
  )
  /**
   * Counts the routed rows of one request: `weights` [rows, T], `experts` the names by column. `current`: the
   * request ran on the version serving the model's new requests, with this build-time profile (none: the
   * package predates it, no drift series); a retiring version's rows (mid-swap) feed no window.
   */
  function routing(
    model: string,
    experts: readonly string[],
    weights: Float32Array,
    current?: { profile: RoutingProfile | undefined },
  ): void {
    if (current) {
      const profile = current.profile
      if (!profile || profile.meanWeight.length !== experts.length) windows.delete(model)
      else {
        let w = windows.get(model)
        if (w?.profile !== profile) {
          w = new RoutingDrift(profile, {
            windowRows: driftOpts.windowRows,
            minRows: DRIFT_MIN_ROWS,
          })
          windows.set(model, w)
          alerting.delete(model)
        }
        w.add(weights)
        driftOf(model) // so that the alert's log line comes when it trips, not at the next scrape
      }
    }
    const s = summarizeRouting(weights, experts.length)
    if (s.rows === 0) return
    routedRows.inc({ model }, s.rows)
    if (s.abstained > 0) abstentions.inc({ model }, s.abstained)
    experts.forEach((expert, j) => {
      expertRows.inc({ model, expert }, s.routedRows[j] ?? 0)
      expertWeight.inc({ model, expert }, s.weightSum[j] ?? 0)
    })
    for (const h of s.entropies) entropy.observe({ model }, h)
  }
  return { routing, drift: (model: string) => driftOf(model)?.value }
}
