/**
 * `GET /metrics` with `Accept: application/json`: the gateway's counters as metric families, the same data
 * as the Prometheus text exposition it serves by default.
 * @module
 */
import { z } from 'zod'

export const MetricSampleSchema = z.object({
  /** Full sample name, e.g. `twinserve_gateway_request_duration_ms_bucket`. */
  name: z.string(),
  labels: z.record(z.string(), z.string()),
  value: z.number(),
})
export type MetricSample = z.infer<typeof MetricSampleSchema>

export const MetricFamilySchema = z.object({
  name: z.string(),
  help: z.string(),
  type: z.enum(['counter', 'gauge', 'histogram']),
  samples: z.array(MetricSampleSchema),
})
export type MetricFamily = z.infer<typeof MetricFamilySchema>

export const GatewayMetricsSchema = z.object({ families: z.array(MetricFamilySchema) })
export type GatewayMetrics = z.infer<typeof GatewayMetricsSchema>
