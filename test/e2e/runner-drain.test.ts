/**
 * Membership and SIGTERM, with real processes on loopback: a runner process joins a gateway, heartbeats its load,
 * and on SIGTERM tells the gateway it drains, finishes every accepted request, deregisters and exits 0.
 *
 * The gateway here is a stand-in: a small Node HTTP server speaking the membership protocol
 * (shared/src/schemas/registry.ts) that verifies signatures and records calls. The real Worker is tested against
 * real runners in the gateway's own e2e tests.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  RUNNER_REGISTRY_PATHS,
  RunnerDeregistrationSchema,
  type RunnerRegistration,
  RunnerRegistrationSchema,
  verifyRequest,
} from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../fixtures/twin-fixture.ts'
import { signedFetch, startRunnerProcess } from '../support/runner-harness.ts'

const SECRET = 'drain-secret-0123456789abcdef'
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-drain-'))

interface Call {
  path: string
  at: number
  body: unknown
}

/** The stand-in gateway: verifies each signed membership call and records it. */
async function standInGateway(
  port = 0,
): Promise<{ url: string; calls: Call[]; rejected: string[]; server: Server }> {
  const calls: Call[] = []
  const rejected: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => {
      body += c
    })
    req.on('end', () => {
      void (async () => {
        const path = req.url ?? ''
        const ok = await verifyRequest(SECRET, {
          method: req.method ?? '',
          path,
          body,
          headers: req.headers,
        })
        if (!ok.ok) {
          rejected.push(`${path}: ${ok.reason}`)
          res.writeHead(401).end()
          return
        }
        calls.push({ path, at: Date.now(), body: JSON.parse(body) as unknown })
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ ok: true, heartbeat_interval_ms: 100 }))
      })()
    })
  })
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  const bound = (server.address() as AddressInfo).port
  return { url: `http://127.0.0.1:${bound}`, calls, rejected, server }
}

const cleanup: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const c of cleanup) await c()
  await rm(root, { recursive: true, force: true })
})

describe('runner membership and SIGTERM drain', () => {
  it('registers, heartbeats load, and on SIGTERM drains every accepted request, deregisters, exits 0', async () => {
    const fx = await writeTwinFixture(join(root, 'pkg'))
    const gw = await standInGateway()
    cleanup.push(() => new Promise((r) => gw.server.close(r)))
    // A long batch window keeps accepted requests queued, so SIGTERM lands while they wait.
    const runner = await startRunnerProcess({
      packages: [join(root, 'pkg')],
      secret: SECRET,
      args: [
        '--gateway-url',
        gw.url,
        '--max-batch-wait-ms',
        '5000',
        '--max-batch-size',
        '1000',
        '--runner-id',
        'e2e-runner',
      ],
    })
    cleanup.push(() => runner.stop('SIGKILL'))

    await runner.waitForLog((l) => l.msg === 'registered with the gateway')
    const registrations = () =>
      gw.calls
        .filter((c) => c.path !== RUNNER_REGISTRY_PATHS.deregister)
        .map((c) => RunnerRegistrationSchema.parse(c.body))
    expect(gw.calls[0]?.path).toBe(RUNNER_REGISTRY_PATHS.register)
    expect(registrations()[0]).toMatchObject({
      runner_id: 'e2e-runner',
      url: runner.url,
      provider: 'cpu',
      draining: false,
      models: [
        {
          name: 'tiny-twin',
          variants: ['shared', 'uniform'],
          experts: ['alpha', 'beta', 'gamma'],
          ready: true,
        },
      ],
      load: { queue_depth: 0, in_flight: 0, capacity: 256 },
    })

    const N = 24
    const example = (i: number) => Array.from({ length: 6 }, (_, j) => Math.sin(i + j * 0.7))
    const controls = [undefined, { top_k: 1 }, { experts: { gamma: 1 } }, { variant: 'uniform' }]
    const accepted = Array.from({ length: N }, (_, i) =>
      signedFetch(SECRET, runner.url, '/v2/models/tiny-twin/infer', {
        body: JSON.stringify({
          id: `r${i}`,
          inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: example(i) }],
          parameters: controls[i % controls.length],
        }),
      }).then(async (res) => ({
        status: res.status,
        body: (await res.json()) as Record<string, unknown>,
      })),
    )
    // Every request is queued (accepted) before the signal: the heartbeat reports them.
    const deadline = Date.now() + 10_000
    while (!registrations().some((r) => r.load.queue_depth === N)) {
      if (Date.now() > deadline) throw new Error('the queued requests never showed in a heartbeat')
      await new Promise((r) => setTimeout(r, 20))
    }

    const sigterm = Date.now()
    runner.child.kill('SIGTERM')
    await runner.waitForLog((l) => l.msg === 'draining')
    // New work after SIGTERM is refused (503) or finds the listener closed: never silently dropped.
    const late = await signedFetch(SECRET, runner.url, '/v2/models/tiny-twin/infer', {
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: example(0) }],
      }),
    }).then(
      async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }),
      (err: unknown) => ({ status: 0, body: { error: String(err) } }),
    )
    if (late.status !== 0) {
      expect(late.status).toBe(503)
      expect(late.body).toMatchObject({ code: 'RUNNER_OVERLOADED' })
      expect(String(late.body.error)).toMatch(/draining/)
    }

    const results = await Promise.all(accepted)
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: N }, () => 200))
    results.forEach((r, i) => {
      expect(r.body.id).toBe(`r${i}`)
      const outputs = r.body.outputs as { name: string; data: number[] }[]
      const y = outputs.find((o) => o.name === 'y')?.data ?? []
      const c = controls[i % controls.length]
      const w =
        c && 'variant' in c
          ? fx.uniformWeights()
          : (outputs.find((o) => o.name === 'expert_weights')?.data ?? [])
      fx.reference(example(i), w).y.forEach((v, k) => {
        expect(Math.abs((y[k] ?? Number.NaN) - v)).toBeLessThan(1e-5)
      })
    })

    expect(await runner.exited).toBe(0)
    expect(gw.rejected).toEqual([])
    const afterSignal = gw.calls.filter((c) => c.at >= sigterm)
    const drainingBeat = afterSignal.findIndex(
      (c) => c.path !== RUNNER_REGISTRY_PATHS.deregister && (c.body as RunnerRegistration).draining,
    )
    const dereg = afterSignal.findIndex((c) => c.path === RUNNER_REGISTRY_PATHS.deregister)
    expect(drainingBeat).toBeGreaterThanOrEqual(0)
    expect(dereg).toBeGreaterThan(drainingBeat)
    expect(RunnerDeregistrationSchema.parse(afterSignal[dereg]?.body)).toEqual({
      runner_id: 'e2e-runner',
    })
    expect(gw.calls.at(-1)?.path).toBe(RUNNER_REGISTRY_PATHS.deregister)
    expect(runner.logs.find((l) => l.msg === 'stopped')).toMatchObject({ drained: true })
  })

  it('keeps serving while the gateway is down, and registers once it appears', async () => {
    const gw = await standInGateway()
    const url = gw.url
    await new Promise((r) => gw.server.close(r))
    await writeTwinFixture(join(root, 'pkg2'))
    const runner = await startRunnerProcess({
      packages: [join(root, 'pkg2')],
      secret: SECRET,
      args: ['--gateway-url', url],
    })
    cleanup.push(() => runner.stop('SIGKILL'))
    await runner.waitForLog((l) => l.msg === 'gateway unreachable, retrying')
    const res = await signedFetch(SECRET, runner.url, '/v2/models/tiny-twin/infer', {
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: [1, 2, 3, 4, 5, 6] }],
      }),
    })
    expect(res.status).toBe(200)
    // The gateway comes up on the same port: the runner's retries find it.
    const revived = await standInGateway(Number(new URL(url).port))
    cleanup.push(() => new Promise((r) => revived.server.close(r)))
    await runner.waitForLog((l) => l.msg === 'registered with the gateway', 15_000)
    expect(revived.calls[0]?.path).toBe(RUNNER_REGISTRY_PATHS.register)
    expect(await runner.stop()).toBe(0)
    expect(revived.calls.at(-1)?.path).toBe(RUNNER_REGISTRY_PATHS.deregister)
    expect(revived.rejected).toEqual([])
  })
})
