import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test'
import { RegistryAckSchema, RUNNER_REGISTRY_PATHS, RunnerListSchema } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { EXPIRY_INTERVALS } from '../src/routing/registry-snapshot.ts'
import { REGISTRY_NAME } from '../src/routing/registry-stub.ts'
import {
  bearer,
  deregister,
  expectError,
  gw,
  migrate,
  register,
  registration,
  runnerCall,
} from './helpers.ts'
import { TEST_ADMIN_SECRET, TEST_HEARTBEAT_INTERVAL_MS } from './test-env.ts'

beforeAll(migrate)

const listRunners = async () =>
  RunnerListSchema.parse(
    await (await gw('/admin/runners', { headers: bearer(TEST_ADMIN_SECRET) })).json(),
  )

const ready = async () => (await gw('/v2/health/ready')).status

describe('runner membership signatures', () => {
  const reg = registration('sig-runner', 'http://127.0.0.1:9/', [{ name: 'sig-model' }])
  const path = RUNNER_REGISTRY_PATHS.register

  it('accepts a correctly signed registration and answers the heartbeat interval', async () => {
    const res = await runnerCall(path, reg)
    expect(res.status).toBe(200)
    expect(RegistryAckSchema.parse(await res.json())).toEqual({
      ok: true,
      heartbeat_interval_ms: TEST_HEARTBEAT_INTERVAL_MS,
    })
    await deregister('sig-runner')
  })

  it('401 for a missing, wrong-secret, expired or body-tampered signature; nothing is registered', async () => {
    const text = JSON.stringify(reg)
    const unsigned = await gw(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: text,
    })
    expect((await expectError(unsigned, 401, 'UNAUTHENTICATED')).error).toMatch(/missing signature/)

    const wrong = await runnerCall(path, reg, { secret: 'some-other-secret-of-enough-length' })
    expect((await expectError(wrong, 401, 'UNAUTHENTICATED')).error).toMatch(/bad signature/)

    const old = await runnerCall(path, reg, { timestamp: Math.floor(Date.now() / 1000) - 3600 })
    expect((await expectError(old, 401, 'UNAUTHENTICATED')).error).toMatch(/expired/)

    const tampered = await runnerCall(path, reg, {
      signedBody: JSON.stringify({ ...reg, url: 'http://127.0.0.1:10/' }),
    })
    expect((await expectError(tampered, 401, 'UNAUTHENTICATED')).error).toMatch(
      /body does not match its signed hash/,
    )

    // Signed for another path (replaying a heartbeat signature as a deregistration).
    const replay = await runnerCall(
      RUNNER_REGISTRY_PATHS.deregister,
      { runner_id: 'x' },
      {
        signedBody: JSON.stringify({ runner_id: 'x' }),
      },
    )
    expect(replay.status).toBe(200)
    expect((await listRunners()).runners.map((r) => r.runner_id)).not.toContain('sig-runner')
  })

  it('checks the signature before the schema: unsigned garbage is 401, signed garbage is 400', async () => {
    const unsigned = await gw(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"runner_id": 5}',
    })
    await expectError(unsigned, 401, 'UNAUTHENTICATED')
    const signed = await runnerCall(path, { ...reg, url: 'not a url', surprise: 1 })
    const body = await expectError(signed, 400, 'INVALID_REQUEST')
    expect(body.error).toMatch(/url/)
    expect(body.error).toMatch(/surprise/)
    const file = await runnerCall(path, { ...reg, url: 'file:///etc/passwd' })
    expect((await expectError(file, 400, 'INVALID_REQUEST')).error).toMatch(/http\(s\)/)
  })
})

describe('runner registry (Durable Object)', () => {
  it('registers, heartbeats load, lists health, and deregisters', async () => {
    expect(await ready()).toBe(503)
    await register(
      registration('r-one', 'http://127.0.0.1:9', [
        { name: 'm-one', variants: ['shared', 'ties'] },
      ]),
    )
    expect(await ready()).toBe(200)
    let [r] = (await listRunners()).runners
    expect(r).toMatchObject({
      runner_id: 'r-one',
      healthy: true,
      breaker: 'closed',
      outstanding: 0,
      draining: false,
    })

    await register(
      registration('r-one', 'http://127.0.0.1:9', [{ name: 'm-one' }], {
        load: { queue_depth: 3, in_flight: 2, capacity: 16 },
        provider: 'cuda',
      }),
      'heartbeat',
    )
    ;[r] = (await listRunners()).runners
    expect(r?.load).toEqual({ queue_depth: 3, in_flight: 2, capacity: 16 })
    expect(r?.provider).toBe('cuda')

    await register(
      registration('r-one', 'http://127.0.0.1:9', [{ name: 'm-one' }], { draining: true }),
      'heartbeat',
    )
    ;[r] = (await listRunners()).runners
    expect(r?.healthy).toBe(false)
    expect(await ready()).toBe(503)

    await deregister('r-one')
    expect((await listRunners()).runners).toEqual([])
    // Deregistering twice (a retried shutdown) is fine.
    await deregister('r-one')
  })

  it('a runner whose models are all loading does not make the gateway ready', async () => {
    await register(registration('r-loading', 'http://127.0.0.1:9', [{ name: 'm-l', ready: false }]))
    expect(await ready()).toBe(503)
    await register(
      registration('r-loading', 'http://127.0.0.1:9', [{ name: 'm-l', ready: true }]),
      'heartbeat',
    )
    expect(await ready()).toBe(200)
    await deregister('r-loading')
  })

  it(`expires a runner silent for ${EXPIRY_INTERVALS} heartbeat intervals, on read and by alarm`, async () => {
    await register(registration('r-silent', 'http://127.0.0.1:9', [{ name: 'm-s' }]))
    await register(registration('r-alive', 'http://127.0.0.1:9', [{ name: 'm-s' }]))
    const stub = env.RUNNER_REGISTRY.getByName(REGISTRY_NAME)
    const silentFor = EXPIRY_INTERVALS * TEST_HEARTBEAT_INTERVAL_MS + 1000
    // Time travel for one runner: its last heartbeat moves into the past, as if it had gone quiet.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(
        'UPDATE runners SET last_seen = ? WHERE runner_id = ?',
        Date.now() - silentFor,
        'r-silent',
      )
    })
    // Just short of the limit it would still count: the other runner shows the boundary is respected.
    expect((await listRunners()).runners.map((r) => r.runner_id)).toEqual(['r-alive'])

    // The alarm prunes without any read: backdate the other runner too and fire the alarm directly.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec('UPDATE runners SET last_seen = ?', Date.now() - silentFor)
    })
    expect(await runDurableObjectAlarm(stub)).toBe(true)
    const rows = await runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec('SELECT runner_id FROM runners').toArray(),
    )
    expect(rows).toEqual([])
  })

  it('keeps a runner that heartbeats within the window', async () => {
    await register(registration('r-steady', 'http://127.0.0.1:9', [{ name: 'm-st' }]))
    const stub = env.RUNNER_REGISTRY.getByName(REGISTRY_NAME)
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(
        'UPDATE runners SET last_seen = ? WHERE runner_id = ?',
        Date.now() - (EXPIRY_INTERVALS * TEST_HEARTBEAT_INTERVAL_MS - 1000),
        'r-steady',
      )
    })
    expect((await listRunners()).runners.map((r) => r.runner_id)).toEqual(['r-steady'])
    await register(registration('r-steady', 'http://127.0.0.1:9', [{ name: 'm-st' }]), 'heartbeat')
    const [r] = (await listRunners()).runners
    expect(Date.parse(r?.last_seen ?? '')).toBeGreaterThan(Date.now() - 1000)
    await deregister('r-steady')
  })
})
