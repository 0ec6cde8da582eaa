/**
 * `GET /metrics` (mounted there): per-model and per-runner counters (metric-families.ts) for admin keys, rate
 * limited like every admin call and counted as `metrics`. Prometheus text by default, GatewayMetrics JSON with
 * `Accept: application/json`. Counters are global (flushed by every isolate to the registry every
 * METRICS_FLUSH_MS); the breaker and in-flight gauges are the answering isolate's.
 * @module
 */
import type { GatewayMetrics } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { guard } from '../guard.ts'
import { registryStub } from '../routing/registry-stub.ts'
import { runnerPool } from '../routing/runner-pool.ts'
import type { GaugeValue } from './metrics-store.ts'
import { PROMETHEUS_CONTENT_TYPE, toPrometheusText } from './prometheus-text.ts'

export const metrics = new Hono<AppEnv>().get(
  '/',
  guard({ access: 'key', scope: 'admin', countAs: 'metrics', rateLimit: true }),
  async (c) => {
    const registry = registryStub(c.env)
    const pool = runnerPool(c.get('config'))
    const snapshot = await registry.snapshot()
    const now = Date.now()
    const local = snapshot.runners.flatMap((r): GaugeValue[] => {
      const view = pool.view(r.runner_id, now)
      return [
        {
          name: 'twinserve_gateway_runner_outstanding',
          labels: { runner: r.runner_id },
          value: view.outstanding,
        },
        {
          name: 'twinserve_gateway_runner_breaker_open',
          labels: { runner: r.runner_id },
          value: view.breaker === 'open' ? 1 : 0,
        },
      ]
    })
    const families = await registry.metricFamilies(local)
    if ((c.req.header('accept') ?? '').includes('application/json')) {
      const body: GatewayMetrics = { families }
      return c.json(body)
    }
    return c.body(toPrometheusText(families), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE })
  },
)
