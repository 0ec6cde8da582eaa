/**
 * Open Inference Protocol server endpoints, mounted at /v2 and public (load balancers and probes call them
 * without a key). Readiness is 200 `{ready:true}` when some live runner holds a ready model (and this isolate's
 * breaker lets traffic through to it), else 503 `{ready:false}`: the body for V2 clients, the status for probes.
 * @module
 */
import type { ServerMetadata } from '@twinserve/shared'
import { Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { guard } from '../guard.ts'
import { registryStub } from './registry-stub.ts'
import { routingSnapshot, runnerPool } from './runner-pool.ts'

export const health = new Hono<AppEnv>()
  .get('/health/live', guard({ access: 'public' }), (c) => c.json({ live: true }))
  .get('/health/ready', guard({ access: 'public' }), async (c) => {
    const pool = runnerPool(c.get('config'))
    const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
    const ready = pool.anyReady(snapshot, Date.now())
    return c.json({ ready }, ready ? 200 : 503)
  })
  .get('/', guard({ access: 'public' }), (c) => {
    const meta: ServerMetadata = {
      name: 'twinserve-gateway',
      version: c.get('config').GATEWAY_VERSION,
      // What the gateway serves of the protocol's extensions (routing/models.ts), then ours.
      extensions: [
        'binary_tensor_data',
        'classification',
        'model_configuration',
        'model_repository',
        'statistics',
        'parameters',
        'twinserve_merge_controls',
      ],
    }
    return c.json(meta)
  })
