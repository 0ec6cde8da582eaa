/**
 * The real gateway (workerd under wrangler dev) in front of two real runner processes on loopback, both serving
 * the same tiny twin package: load spreads over both, a malformed request is answered by the gateway without a
 * runner ever seeing it, and a runner SIGKILLed in the middle of a load costs no client request (failover).
 * Every 200 is checked against the fixture's independent reference, so a wrong answer cannot pass as served.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TwinFixture, writeTwinFixture } from '../fixtures/twin-fixture.ts'
import {
  type E2eGateway,
  metricValue,
  startE2eGateway,
  startGatewayRunner,
} from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const MODEL = 'routing-twin'
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-routing-'))
let gw: E2eGateway
let key: string
let fx: TwinFixture
const runners: Record<'a' | 'b', RunnerProcess | undefined> = { a: undefined, b: undefined }

const example = (i: number) => Array.from({ length: 6 }, (_, j) => Math.sin(i * 1.3 + j * 0.7))
const body = (i: number) => ({
  id: `req-${i}`,
  inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: example(i) }],
})

interface Served {
  status: number
  runner: string | null
  json: Record<string, unknown>
}

/** `n` requests with ids `${prefix}-${i}` (also sent as x-request-id), `concurrency` at a time. */
async function load(prefix: string, n: number, concurrency: number): Promise<Served[]> {
  const out: Served[] = new Array(n)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < n; i = next++) {
      const r = await gw.infer(key, MODEL, body(i), { 'x-request-id': `${prefix}-${i}` })
      out[i] = { status: r.status, runner: r.headers.get('x-twinserve-runner'), json: r.json }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return out
}

/** The answer is the model's: y equals the fixture's reference at the expert weights the runner reports. */
function expectCorrect(s: Served, i: number): void {
  expect(s.status, JSON.stringify(s.json)).toBe(200)
  expect(s.json.id).toBe(`req-${i}`)
  const outputs = s.json.outputs as { name: string; data: number[] }[]
  const y = outputs.find((o) => o.name === 'y')?.data ?? []
  const w = outputs.find((o) => o.name === 'expert_weights')?.data ?? []
  const ref = fx.reference(example(i), w).y
  expect(y).toHaveLength(ref.length)
  ref.forEach((v, k) => {
    expect(Math.abs((y[k] ?? Number.NaN) - v)).toBeLessThan(1e-5)
  })
}

/** Request ids a runner logged an inference for. */
const served = (r: RunnerProcess | undefined, prefix: string) =>
  new Set(
    (r?.logs ?? [])
      .filter((l) => l.msg === 'infer' && String(l.request_id).startsWith(`${prefix}-`))
      .map((l) => String(l.request_id)),
  )

beforeAll(async () => {
  fx = await writeTwinFixture(join(root, 'pkg'), { name: MODEL })
  gw = await startE2eGateway({ MAX_BODY_BYTES: '65536', RATE_LIMIT_RPS: '100000' })
  key = await gw.createKey([MODEL])
  ;[runners.a, runners.b] = await Promise.all([
    startGatewayRunner(gw, { packages: [join(root, 'pkg')], runnerId: 'a' }),
    startGatewayRunner(gw, { packages: [join(root, 'pkg')], runnerId: 'b' }),
  ])
  expect((await gw.runners()).sort()).toEqual(['a', 'b'])
}, 120_000)

afterAll(async () => {
  await Promise.all([runners.a?.stop('SIGKILL'), runners.b?.stop('SIGKILL')])
  await gw?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('gateway with two real runners', () => {
  it('spreads load across both runners, and each answer comes from the runner it names', async () => {
    const N = 120
    const results = await load('spread', N, 8)
    results.forEach((r, i) => {
      expectCorrect(r, i)
    })
    const byA = results.filter((r) => r.runner === 'a').length
    const byB = results.filter((r) => r.runner === 'b').length
    expect(byA + byB).toBe(N)
    // Least-loaded of two choices: neither runner idles while the other queues.
    expect(Math.min(byA, byB)).toBeGreaterThanOrEqual(N * 0.25)
    // The x-twinserve-runner header tells the truth: the runner logged every request credited to it. A runner
    // may also have logged a request the other answered, but only one the gateway hedged (sent to both when
    // the first was slower than the observed p99; the first answer won).
    const hedged = new Set(
      gw.logs.filter((l) => l.event === 'runner_attempt_hedged').map((l) => String(l.request_id)),
    )
    for (const who of ['a', 'b'] as const) {
      const credited = new Set(results.flatMap((r, i) => (r.runner === who ? [`spread-${i}`] : [])))
      const logged = served(runners[who], 'spread')
      for (const id of credited) expect(logged.has(id), id).toBe(true)
      for (const id of logged) expect(credited.has(id) || hedged.has(id), id).toBe(true)
    }
  })

  it('rejects malformed requests at the gateway: a clear 4xx, and no runner sees them', async () => {
    const good = body(0)
    const x = good.inputs[0]
    const cases: {
      name: string
      body: unknown
      headers?: Record<string, string>
      status: number
      code: string
      mentions: RegExp
    }[] = [
      {
        name: 'not JSON',
        body: '{"inputs": [',
        status: 400,
        code: 'INVALID_REQUEST',
        mentions: /JSON/,
      },
      {
        name: 'wrong content type',
        body: JSON.stringify(good),
        headers: { 'content-type': 'text/plain' },
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
        mentions: /application\/json/,
      },
      {
        name: 'no inputs',
        body: { id: 'x' },
        status: 400,
        code: 'INVALID_REQUEST',
        mentions: /inputs/,
      },
      {
        name: 'data does not fill the shape',
        body: { inputs: [{ ...x, shape: [2, 6] }] },
        status: 400,
        code: 'INVALID_REQUEST',
        mentions: /12|shape/,
      },
      {
        name: 'a string in an FP32 tensor',
        body: { inputs: [{ ...x, data: ['a', 1, 2, 3, 4, 5] }] },
        status: 400,
        code: 'INVALID_REQUEST',
        mentions: /inputs\.0\.data/,
      },
      {
        name: 'an unknown top-level field',
        body: { ...good, input: [] },
        status: 400,
        code: 'INVALID_REQUEST',
        mentions: /input/,
      },
      {
        name: 'a misspelt merge control',
        body: { ...good, parameters: { top_kk: 2 } },
        status: 400,
        code: 'INVALID_REQUEST',
        mentions: /top_kk/,
      },
      {
        name: 'a body over MAX_BODY_BYTES',
        body: { inputs: [{ ...x, shape: [1, 20_000], data: new Array(20_000).fill(0.5) }] },
        status: 413,
        code: 'PAYLOAD_TOO_LARGE',
        mentions: /65536/,
      },
    ]
    const before = [runners.a, runners.b].map((r) => r?.logs.length ?? 0)
    for (const [i, c] of cases.entries()) {
      const id = `malformed-${i}`
      const r = await gw.infer(key, MODEL, c.body, { 'x-request-id': id, ...c.headers })
      expect({ case: c.name, status: r.status, code: r.json.code }).toEqual({
        case: c.name,
        status: c.status,
        code: c.code,
      })
      expect(r.json.request_id).toBe(id)
      expect(String(r.json.error), c.name).toMatch(c.mentions)
      expect(r.headers.get('x-twinserve-runner')).toBeNull()
    }
    // A good request afterwards reaches a runner, so the runners' logs are flowing.
    const ok = await gw.infer(key, MODEL, body(1), { 'x-request-id': 'after-malformed' })
    expectCorrect({ status: ok.status, runner: null, json: ok.json }, 1)
    const who = ok.headers.get('x-twinserve-runner') === 'a' ? runners.a : runners.b
    await who?.waitForLog((l) => l.request_id === 'after-malformed')
    // Nothing a runner logged since the malformed batch concerns it: no request reached a runner.
    ;[runners.a, runners.b].forEach((r, k) => {
      const since = (r?.logs ?? []).slice(before[k])
      expect(since.filter((l) => String(l.request_id ?? '').startsWith('malformed-'))).toEqual([])
      expect(since.filter((l) => l.msg === 'infer' || l.msg === 'request').length).toBe(
        r === who ? 1 : 0,
      )
    })
  })

  it('loses no client request when a runner is SIGKILLed mid-load (failover to the other)', async () => {
    const N = 240
    const pending = load('failover', N, 8)
    // Kill `a` once it has served a share of this load, while requests are in flight on both.
    const deadline = Date.now() + 30_000
    while (served(runners.a, 'failover').size < 20) {
      if (Date.now() > deadline) throw new Error('runner a never served 20 requests')
      await new Promise((r) => setTimeout(r, 5))
    }
    const killed = Date.now()
    runners.a?.child.kill('SIGKILL')
    const results = await pending
    results.forEach((r, i) => {
      expectCorrect(r, i)
    })
    const byA = results.filter((r) => r.runner === 'a').length
    const byB = results.filter((r) => r.runner === 'b').length
    expect(byA + byB).toBe(N)
    expect(byB).toBeGreaterThan(N / 2)
    // What `a` answered, it had logged; it may also have logged some whose answer the kill cut off (those
    // were run again on `b`: inference is idempotent).
    const loggedByA = served(runners.a, 'failover')
    results.forEach((r, i) => {
      if (r.runner === 'a') expect(loggedByA.has(`failover-${i}`)).toBe(true)
    })
    // Failover really happened: attempts at the dead runner failed and were retried on b. The gateway's log lines
    // reach this process through wrangler's stdout, which can trail the responses when the cores are busy: wait for
    // the first of each kind rather than reading the log at once. An attempt that a hedge to b had beaten before
    // the kill fails after its request's answer (`after_answer`), and is logged all the same: without that line,
    // a kill that found only such attempts at `a` (which a hedge had made a suspect that new requests avoid) left
    // no trace in the log (3 of 5 fresh-clone runs with two vitest workers).
    const failoverLines = () =>
      gw.logs
        .filter((l) => String(l.request_id).startsWith('failover-') && l.event !== 'request')
        .map((l) => JSON.stringify(l))
        .join('\n')
    await gw
      .waitForLog(
        (l) =>
          l.event === 'runner_attempt_failed' &&
          l.runner_id === 'a' &&
          String(l.request_id).startsWith('failover-'),
      )
      .catch((err: unknown) => {
        throw new Error(
          `${String(err)}; the gateway's attempt lines for this load:\n${failoverLines()}`,
        )
      })
    await gw.waitForLog(
      (l) =>
        l.event === 'request' &&
        String(l.request_id).startsWith('failover-') &&
        Number(l.attempts) > 1,
    )
    const failed = gw.logs.filter(
      (l) =>
        l.event === 'runner_attempt_failed' &&
        l.runner_id === 'a' &&
        String(l.request_id).startsWith('failover-'),
    )
    expect(failed.length).toBeGreaterThan(0)
    expect(failed.every((l) => l.outcome === 'connect_error' || l.outcome === 'timeout')).toBe(true)
    const retried = gw.logs.filter(
      (l) =>
        l.event === 'request' &&
        String(l.request_id).startsWith('failover-') &&
        Number(l.attempts) > 1,
    )
    expect(retried.length).toBeGreaterThan(0)
    expect(retried.every((l) => l.status === 200)).toBe(true)
    // A request whose attempt at the dead runner failed ended on b. (Other retried requests may end on a: a hedge
    // sent to a while b was slow, before the kill.)
    const failedOnA = new Set(failed.map((l) => String(l.request_id)))
    const afterFailure = retried.filter((l) => failedOnA.has(String(l.request_id)))
    expect(afterFailure.length).toBeGreaterThan(0)
    expect(afterFailure.every((l) => l.runner_id === 'b')).toBe(true)
    // The retries are counted (counters flush to the registry about once a second).
    let m = await gw.metrics()
    while (metricValue(m, 'twinserve_gateway_retries_total', { model: MODEL }) === 0) {
      if (Date.now() - killed > 15_000) throw new Error('retries never showed in /metrics')
      await new Promise((r) => setTimeout(r, 200))
      m = await gw.metrics()
    }
    expect(
      metricValue(m, 'twinserve_gateway_runner_requests_total', {
        runner: 'a',
        outcome: 'connect_error',
      }),
    ).toBeGreaterThan(0)
  })
})
