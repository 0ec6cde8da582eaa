import type { GatewayMetrics } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import type { GaugeValue } from '../lib/metrics-store.ts'
import { PROMETHEUS_CONTENT_TYPE, toPrometheusText } from '../lib/prometheus-text.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { runnerPool } from '../lib/runner-pool.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'

/**
 * Per-model and per-runner counters (lib/metric-families.ts), admin only: Prometheus text by default,
 * GatewayMetrics JSON with `Accept: application/json`. Counters are global (flushed by every isolate to the
 * registry every METRICS_FLUSH_MS); the breaker and in-flight gauges are the answering isolate's.
 */
export const metrics = new Hono<AppEnv>().get(
  '/metrics',
  apiKeyAuth({ scope: 'admin' }),
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
