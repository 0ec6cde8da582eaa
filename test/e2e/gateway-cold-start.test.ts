/**
 * Cold starts with the real gateway and a real runner process. A model no runner serves or has served is a 404
 * at once (the gateway's catalog, issue #15). A model that was served and whose runners are gone (scaled to zero)
 * waits: a request is visible as the scale-from-zero gauge and is served by a runner started after it arrived;
 * when none comes within the wait, 503 NO_RUNNER with Retry-After. Both are logged and counted.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../fixtures/twin-fixture.ts'
import {
  type E2eGateway,
  metricValue,
  startE2eGateway,
  startGatewayRunner,
} from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-cold-'))
const RETRY_AFTER_S = '7'
let gw: E2eGateway
let key: string
let runner: RunnerProcess | undefined

const request = (data: number[]) => ({
  inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data }],
})

beforeAll(async () => {
  gw = await startE2eGateway({
    // Long enough for a runner process to start on a busy machine; the 503 case shortens its own deadline.
    COLD_START_WAIT_MS: '30000',
    COLD_START_RETRY_AFTER_S: RETRY_AFTER_S,
    METRICS_FLUSH_MS: '100',
  })
  key = await gw.createKey()
}, 120_000)

afterAll(async () => {
  await runner?.stop('SIGKILL')
  await gw?.stop()
  await rm(root, { recursive: true, force: true })
})

/** Polls /metrics until `pred` holds. */
async function metricsUntil(pred: (m: Awaited<ReturnType<E2eGateway['metrics']>>) => boolean) {
  const deadline = Date.now() + 15_000
  for (;;) {
    const m = await gw.metrics()
    if (pred(m)) return m
    if (Date.now() > deadline) throw new Error('metrics never reached the expected state')
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('cold starts through the real gateway', () => {
  it('a model no runner serves or has served: 404 NOT_FOUND at once, within 100 ms', async () => {
    const times: number[] = []
    for (let i = 0; i < 5; i++) {
      const started = performance.now()
      const r = await gw.infer(key, 'absent-twin', request([1, 2, 3, 4, 5, 6]))
      times.push(performance.now() - started)
      expect(r.status).toBe(404)
      expect(r.json).toMatchObject({ code: 'NOT_FOUND' })
      expect(String(r.json.error)).toMatch(/'absent-twin' is not served here/)
    }
    // The median: the first call of an isolate also compiles the Worker.
    expect(times.sort((a, b) => a - b)[2]).toBeLessThan(100)
  })

  it('a served model whose runners are gone: waits, then 503 NO_RUNNER with Retry-After (logged and counted)', async () => {
    await writeTwinFixture(join(root, 'pkg'), { name: 'cold-twin' })
    // The model is served once, then its only runner drains and deregisters: scaled to zero.
    runner = await startGatewayRunner(gw, { packages: [join(root, 'pkg')], runnerId: 'early' })
    await runner.stop()
    runner = undefined
    const ready = await fetch(`${gw.url}/v2/health/ready`)
    expect(ready.status).toBe(503)
    await ready.body?.cancel()
    const started = Date.now()
    // The caller's deadline bounds the wait (the configured 30 s would make a slow test).
    const r = await gw.infer(key, 'cold-twin', request([1, 2, 3, 4, 5, 6]), {
      'x-twinserve-deadline-ms': '1500',
      'x-request-id': 'nobody-home',
    })
    const elapsed = Date.now() - started
    expect(r.status).toBe(503)
    expect(r.headers.get('retry-after')).toBe(RETRY_AFTER_S)
    expect(r.json).toMatchObject({ code: 'NO_RUNNER', request_id: 'nobody-home' })
    expect(String(r.json.error)).toMatch(/cold-twin/)
    // It did wait for a runner to register (not an immediate refusal), and no longer than the deadline allows.
    expect(elapsed).toBeGreaterThanOrEqual(1400)
    expect(elapsed).toBeLessThan(10_000)
    const logged = await gw.waitForLog(
      (l) => l.event === 'cold_start_timeout' && l.request_id === 'nobody-home',
    )
    expect(Number(logged.waited_ms)).toBeGreaterThanOrEqual(1400)
    await metricsUntil(
      (m) =>
        metricValue(m, 'twinserve_gateway_cold_starts_total', {
          result: 'timed_out',
        }) === 1,
    )
  })

  it('a request that arrives while no runner holds the model is served once a runner starts and registers', async () => {
    const fx = await writeTwinFixture(join(root, 'pkg'), { name: 'cold-twin', overwrite: true })
    const x = [0.3, -0.2, 0.9, 0.1, -0.7, 0.5]
    const started = Date.now()
    const pending = gw.infer(key, 'cold-twin', request(x), { 'x-request-id': 'cold-1' })
    // The request is waiting: the registry shows it as the scale-from-zero signal.
    await metricsUntil(
      (m) => metricValue(m, 'twinserve_gateway_cold_start_waiting', { model: 'cold-twin' }) === 1,
    )
    runner = await startGatewayRunner(gw, { packages: [join(root, 'pkg')], runnerId: 'late' })
    const registered = Date.now()
    const r = await pending
    expect(r.status, JSON.stringify(r.json)).toBe(200)
    expect(r.headers.get('x-twinserve-runner')).toBe('late')
    const outputs = r.json.outputs as { name: string; data: number[] }[]
    const w = outputs.find((o) => o.name === 'expert_weights')?.data ?? []
    const y = outputs.find((o) => o.name === 'y')?.data ?? []
    fx.reference(x, w).y.forEach((v, k) => {
      expect(Math.abs((y[k] ?? Number.NaN) - v)).toBeLessThan(1e-5)
    })
    await runner.waitForLog((l) => l.msg === 'infer' && l.request_id === 'cold-1')

    const served = await gw.waitForLog(
      (l) => l.event === 'cold_start_served' && l.request_id === 'cold-1',
    )
    // The wait covered the runner's start-up: it began when the request arrived.
    expect(Number(served.waited_ms)).toBeGreaterThanOrEqual(registered - started - 1000)
    const line = await gw.waitForLog((l) => l.event === 'request' && l.request_id === 'cold-1')
    expect(line).toMatchObject({ status: 200, runner_id: 'late', cold_start_result: 'served' })
    await metricsUntil(
      (m) =>
        metricValue(m, 'twinserve_gateway_cold_starts_total', {
          model: 'cold-twin',
          result: 'served',
        }) === 1 &&
        metricValue(m, 'twinserve_gateway_cold_start_waiting', { model: 'cold-twin' }) === 0,
    )
    const ready = await fetch(`${gw.url}/v2/health/ready`)
    expect(ready.status).toBe(200)
    await ready.body?.cancel()
  })
})
