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
 * plus prom-client's default process metrics (`twinserve_runner_process_*`, `twinserve_runner_nodejs_*`).
 * @module
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'

export type RunnerMetrics = ReturnType<typeof createMetrics>

export function createMetrics(opts: {
  queueDepth: () => number
  inFlight: () => number
  capacity: number
  draining: () => boolean
  cache: () => { model: string; entries: number; bytes: number }[]
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
  return {
    registry,
    requests,
    duration,
    batchRows,
    batchRequests,
    rejected,
    abstainedRows,
    cacheLookups,
    provider,
  }
}
