/**
 * Per-isolate metric increments, summed locally and flushed to the registry object in one call at most every
 * METRICS_FLUSH_MS. Reporting every request to one Durable Object would put a global singleton on the hot path;
 * batching keeps its load proportional to the number of isolates, not requests. An isolate evicted between
 * flushes loses what it had not flushed (counters may undercount slightly, never overcount).
 * @module
 */
import { METRIC_FAMILIES } from './metric-families.ts'
import {
  type CounterName,
  type HistogramName,
  type LabelsOf,
  labelKey,
  type MetricsBatch,
} from './metrics-store.ts'

export class MetricsBuffer {
  private counters = new Map<string, { name: CounterName; key: string; by: number }>()
  private histograms = new Map<string, MetricsBatch['histograms'][number]>()

  get empty(): boolean {
    return this.counters.size === 0 && this.histograms.size === 0
  }

  inc<N extends CounterName>(name: N, labels: LabelsOf<N>, by = 1): void {
    const key = labelKey(METRIC_FAMILIES[name].labels, labels)
    const id = `${name}\u0000${key}`
    const c = this.counters.get(id)
    if (c) c.by += by
    else this.counters.set(id, { name, key, by })
  }

  observe<N extends HistogramName>(name: N, labels: LabelsOf<N>, value: number): void {
    const def = METRIC_FAMILIES[name]
    const key = labelKey(def.labels, labels)
    const id = `${name}\u0000${key}`
    let h = this.histograms.get(id)
    if (!h) {
      h = { name, key, buckets: def.buckets.map(() => 0), sum: 0, count: 0 }
      this.histograms.set(id, h)
    }
    const i = def.buckets.findIndex((le) => value <= le)
    if (i >= 0) h.buckets[i] = (h.buckets[i] ?? 0) + 1
    h.sum += value
    h.count += 1
  }

  /** Everything since the last drain, and an empty buffer. */
  drain(): MetricsBatch {
    const batch = {
      counters: [...this.counters.values()],
      histograms: [...this.histograms.values()],
    }
    this.counters = new Map()
    this.histograms = new Map()
    return batch
  }
}
