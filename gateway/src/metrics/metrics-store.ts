/**
 * Counter and histogram values for METRIC_FAMILIES, kept in the registry Durable Object's SQLite so that they
 * are global (every isolate flushes its MetricsBuffer there) and survive the object being evicted. Histograms
 * are stored per bucket (not cumulative); rendering accumulates.
 * @module
 */
import type { MetricFamily, MetricSample } from '@twinserve/shared'
import { METRIC_FAMILIES, type MetricName } from './metric-families.ts'

type Families = typeof METRIC_FAMILIES
type NameOfType<T extends string> = {
  [K in MetricName]: Families[K]['type'] extends T ? K : never
}[MetricName]
export type CounterName = NameOfType<'counter'>
export type HistogramName = NameOfType<'histogram'>
export type GaugeName = NameOfType<'gauge'>
export type LabelsOf<N extends MetricName> = Record<Families[N]['labels'][number], string>

export type GaugeValue = {
  [N in GaugeName]: { name: N; labels: LabelsOf<N>; value: number }
}[GaugeName]

/** Label values in the family's declared order, as one string key. */
export const labelKey = (names: readonly string[], labels: Record<string, string>): string =>
  JSON.stringify(names.map((n) => labels[n] ?? ''))

/** Aggregated increments from one isolate since its last flush (see metrics-buffer.ts). */
export interface MetricsBatch {
  counters: Array<{ name: CounterName; key: string; by: number }>
  histograms: Array<{
    name: HistogramName
    key: string
    /** Observations per bucket of the family (not cumulative); those above every bound are only in count. */
    buckets: number[]
    sum: number
    count: number
  }>
}

export class MetricsStore {
  constructor(private readonly sql: SqlStorage) {
    sql.exec(
      `CREATE TABLE IF NOT EXISTS metric_values (
         name TEXT NOT NULL, labels TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (name, labels))`,
    )
  }

  private add(name: string, key: string, by: number): void {
    this.sql.exec(
      `INSERT INTO metric_values (name, labels, value) VALUES (?, ?, ?)
       ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value`,
      name,
      key,
      by,
    )
  }

  inc<N extends CounterName>(name: N, labels: LabelsOf<N>, by = 1): void {
    this.add(name, labelKey(METRIC_FAMILIES[name].labels, labels), by)
  }

  /** Adds a batch: a handful of upserts however many requests it sums up. */
  apply(batch: MetricsBatch): void {
    for (const c of batch.counters) this.add(c.name, c.key, c.by)
    for (const h of batch.histograms) {
      h.buckets.forEach((n, i) => {
        if (n > 0) this.add(`${h.name}_bucket`, JSON.stringify([h.key, i]), n)
      })
      this.add(`${h.name}_sum`, h.key, h.sum)
      this.add(`${h.name}_count`, h.key, h.count)
    }
  }

  /** All families with their samples; gauges are computed by the caller at read time. */
  families(gauges: readonly GaugeValue[]): MetricFamily[] {
    const rows = this.sql
      .exec<{ name: string; labels: string; value: number }>(
        'SELECT name, labels, value FROM metric_values ORDER BY name, labels',
      )
      .toArray()
    const byName = new Map<string, Array<{ labels: string; value: number }>>()
    for (const r of rows) {
      const list = byName.get(r.name) ?? []
      list.push({ labels: r.labels, value: r.value })
      byName.set(r.name, list)
    }
    const toLabels = (names: readonly string[], key: string): Record<string, string> => {
      const values = JSON.parse(key) as string[]
      return Object.fromEntries(names.map((n, i) => [n, values[i] ?? '']))
    }

    return (Object.keys(METRIC_FAMILIES) as MetricName[]).map((name): MetricFamily => {
      const def: {
        help: string
        type: string
        labels: readonly string[]
        buckets?: readonly number[]
      } = METRIC_FAMILIES[name]
      const samples: MetricSample[] = []
      if (def.type === 'counter') {
        for (const r of byName.get(name) ?? [])
          samples.push({ name, labels: toLabels(def.labels, r.labels), value: r.value })
      } else if (def.type === 'gauge') {
        for (const g of gauges)
          if (g.name === name) samples.push({ name, labels: { ...g.labels }, value: g.value })
      } else {
        const buckets = def.buckets ?? []
        const perBucket = new Map<string, number[]>()
        for (const r of byName.get(`${name}_bucket`) ?? []) {
          const [key, index] = JSON.parse(r.labels) as [string, number]
          const counts = perBucket.get(key) ?? buckets.map(() => 0)
          counts[index] = r.value
          perBucket.set(key, counts)
        }
        const sums = new Map((byName.get(`${name}_sum`) ?? []).map((r) => [r.labels, r.value]))
        for (const c of byName.get(`${name}_count`) ?? []) {
          const labels = toLabels(def.labels, c.labels)
          const counts = perBucket.get(c.labels) ?? buckets.map(() => 0)
          let cumulative = 0
          buckets.forEach((le, i) => {
            cumulative += counts[i] ?? 0
            samples.push({
              name: `${name}_bucket`,
              labels: { ...labels, le: String(le) },
              value: cumulative,
            })
          })
          samples.push({
            name: `${name}_bucket`,
            labels: { ...labels, le: '+Inf' },
            value: c.value,
          })
          samples.push({ name: `${name}_sum`, labels, value: sums.get(c.labels) ?? 0 })
          samples.push({ name: `${name}_count`, labels, value: c.value })
        }
      }
      return { name, help: def.help, type: def.type as MetricFamily['type'], samples }
    })
  }
}
