export { METRIC_FAMILIES, type MetricName } from './metric-families.ts'
export { metrics } from './metrics-route.ts'
export { PROMETHEUS_CONTENT_TYPE, toPrometheusText } from './prometheus-text.ts'
