import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CreatedApiKeySchema,
  InferenceResponseSchema,
  RUNNER_REGISTRY_PATHS,
  signRequest,
} from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { applyLocalMigrations, type LocalGateway, startLocalGateway } from './local-gateway.ts'
import { RunnerStandIn } from './runner-stand-in.ts'

const SECRET = 'dev-test-signing-secret-0123456789'
const ADMIN = 'dev-test-admin-secret-0123456789'

// The gateway as a real workerd process under `wrangler dev`, with migrations applied the documented way;
// the upstream is a runner STAND-IN (gateway/dev/runner-stand-in.ts), not the real runner.
describe('gateway under wrangler dev (real process)', () => {
  let dir: string
  let gw: LocalGateway
  let runner: RunnerStandIn

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'twinserve-gw-'))
    await applyLocalMigrations({ persistTo: dir })
    // Applying twice is a no-op (npm start runs it on every start).
    await applyLocalMigrations({ persistTo: dir })
    gw = await startLocalGateway({
      persistTo: dir,
      vars: {
        RUNNER_SIGNING_SECRET: SECRET,
        ADMIN_BOOTSTRAP_SECRET: ADMIN,
        COLD_START_WAIT_MS: '2000',
      },
    })
    runner = await RunnerStandIn.start('dev-runner', ['demo'], SECRET)
  }, 90_000)

  afterAll(async () => {
    await runner?.kill()
    await gw?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('serves keys from the migrated D1, registers a runner, and routes inference to it', async () => {
    expect((await fetch(`${gw.url}/v2/health/ready`)).status).toBe(503)
    const created = await fetch(`${gw.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'dev', scopes: ['infer'], models: ['demo'] }),
    })
    expect(created.status).toBe(201)
    const { key } = CreatedApiKeySchema.parse(await created.json())

    const reg = JSON.stringify({
      runner_id: 'dev-runner',
      url: runner.stats.url,
      provider: 'cpu',
      models: [{ name: 'demo', variants: ['shared'], experts: ['a'], ready: true }],
      load: { queue_depth: 0, in_flight: 0, capacity: 8 },
    })
    const path = RUNNER_REGISTRY_PATHS.register
    const signed = await signRequest(SECRET, { method: 'POST', path, body: reg })
    const ack = await fetch(gw.url + path, {
      method: 'POST',
      headers: { ...signed, 'content-type': 'application/json' },
      body: reg,
    })
    expect(ack.status).toBe(200)
    expect((await fetch(`${gw.url}/v2/health/ready`)).status).toBe(200)

    const res = await fetch(`${gw.url}/v2/models/demo/infer`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [2], datatype: 'FP32', data: [1.5, 2] }],
      }),
    })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get('x-twinserve-runner')).toBe('dev-runner')
    expect(InferenceResponseSchema.parse(await res.json()).outputs[0]?.data).toEqual([3.5])
    expect(runner.stats.bad_signatures).toBe(0)
  })
})
