/**
 * The isolate's MetricsBuffer and its flushing: the first request that adds to an idle buffer schedules a flush
 * METRICS_FLUSH_MS later (kept alive with waitUntil); everything added meanwhile rides along in one call.
 * @module
 */
import type { GatewayConfig } from '../config.ts'
import { registryStub } from '../routing/registry-stub.ts'
import { errorFields, log } from '../util/log.ts'
import { MetricsBuffer } from './metrics-buffer.ts'

export const metrics = new MetricsBuffer()
let scheduled = false

/** Returns the flush promise; the caller hands it to waitUntil (or awaits it when there is no context). */
export function scheduleMetricsFlush(env: Env, config: GatewayConfig): Promise<void> | undefined {
  if (scheduled || metrics.empty) return undefined
  scheduled = true
  return new Promise<void>((resolve) => setTimeout(resolve, config.METRICS_FLUSH_MS))
    .then(async () => {
      scheduled = false
      const batch = metrics.drain()
      await registryStub(env).record(batch)
    })
    .catch((err: unknown) => {
      scheduled = false
      log('warn', 'metrics_flush_failed', errorFields(err))
    })
}
