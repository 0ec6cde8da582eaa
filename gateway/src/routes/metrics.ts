import type { GatewayMetrics } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { PROMETHEUS_CONTENT_TYPE, toPrometheusText } from '../lib/prometheus-text.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { apiKeyAuth } from '../middleware/auth/index.ts'

/**
 * Per-model and per-runner counters (lib/metric-families.ts), admin only: Prometheus text by default,
 * GatewayMetrics JSON with `Accept: application/json`.
 */
export const metrics = new Hono<AppEnv>().get(
  '/metrics',
  apiKeyAuth({ scope: 'admin' }),
  async (c) => {
    const families = await registryStub(c.env).metricFamilies()
    if ((c.req.header('accept') ?? '').includes('application/json')) {
      const body: GatewayMetrics = { families }
      return c.json(body)
    }
    return c.body(toPrometheusText(families), 200, { 'content-type': PROMETHEUS_CONTENT_TYPE })
  },
)
