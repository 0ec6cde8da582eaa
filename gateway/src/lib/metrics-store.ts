/**
 * Counter and histogram values for METRIC_FAMILIES, kept in a Durable Object's SQLite so that they are global
 * (every isolate reports to the one registry object) and survive the object being evicted. Histograms are
 * stored per bucket (not cumulative) so one observation is three upserts; rendering accumulates.
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

const labelKey = (names: readonly string[], labels: Record<string, string>): string =>
  JSON.stringify(names.map((n) => labels[n] ?? ''))

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

  observe<N extends HistogramName>(name: N, labels: LabelsOf<N>, value: number): void {
    const def = METRIC_FAMILIES[name]
    const key = labelKey(def.labels, labels)
    const bucket = def.buckets.findIndex((le) => value <= le)
    // Bucket index -1 (above every bound) lands only in +Inf, which is the count.
    if (bucket >= 0) this.add(`${name}_bucket`, JSON.stringify([key, bucket]), 1)
    this.add(`${name}_sum`, key, value)
    this.add(`${name}_count`, key, 1)
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
