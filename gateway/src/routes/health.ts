import type { ServerMetadata } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../env.ts'
import { registryStub } from '../lib/registry-stub.ts'
import { routingSnapshot, runnerPool } from '../lib/runner-pool.ts'

/**
 * Open Inference Protocol server endpoints, public (load balancers and probes call them without a key).
 * Readiness is 200 `{ready:true}` when some live runner holds a ready model (and this isolate's breaker lets
 * traffic through to it), else 503 `{ready:false}`: the body for V2 clients, the status for probes.
 */
export const health = new Hono<AppEnv>()
  .get('/v2/health/live', (c) => c.json({ live: true }))
  .get('/v2/health/ready', async (c) => {
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const ready = pool.anyReady(snapshot, Date.now())
    return c.json({ ready }, ready ? 200 : 503)
  })
  .get('/v2', (c) => {
    const meta: ServerMetadata = {
      name: 'twinserve-gateway',
      version: c.get('config').GATEWAY_VERSION,
      extensions: [],
    }
    return c.json(meta)
  })
