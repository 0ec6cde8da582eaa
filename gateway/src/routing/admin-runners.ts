/**
 * `GET /admin/runners` (mounted there): the live runners (RunnerList) for admin keys. Membership comes from the
 * registry, read fresh; breaker and in-flight count as the answering isolate sees them (each isolate keeps its
 * own, like each node of a load balancer).
 * @module
 */
import type { RunnerList, RunnerStatus } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { adminApi } from '../guard.ts'
import { registryStub } from './registry-stub.ts'
import { runnerPool } from './runner-pool.ts'

export const adminRunners = new Hono<AppEnv>().get('/', adminApi(), async (c) => {
  const pool = runnerPool(c.get('config'))
  const snapshot = await registryStub(c.env).snapshot()
  const now = Date.now()
  pool.adopt(snapshot, now)
  const runners = snapshot.runners.map((r): RunnerStatus => {
    const view = pool.view(r.runner_id, now)
    return {
      runner_id: r.runner_id,
      url: r.url,
      provider: r.provider,
      models: r.models,
      load: r.load,
      draining: r.draining,
      registered_at: new Date(r.registered_at).toISOString(),
      last_seen: new Date(r.last_seen).toISOString(),
      healthy: !r.draining && view.breaker !== 'open',
      ...view,
    }
  })
  const body: RunnerList = { runners, heartbeat_interval_ms: snapshot.heartbeat_interval_ms }
  return c.json(body)
})
