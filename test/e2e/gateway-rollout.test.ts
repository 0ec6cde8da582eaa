/**
 * Issue #19 end to end: a canary rollout of a deliberately broken package rolls back by itself. The real gateway
 * (workerd under wrangler dev) in front of two real runner processes in runner group "blue": one serves the demo
 * package (zoo/fashion/package, stable), the other a copy whose graph flattens its logits (a bad export;
 * test/fixtures/broken-package.ts), so that every inference there fails at run time with a 500. The rollout
 * sends 50% of the callers to the canary; under load the guardrail trips, the gateway rolls the canary back with
 * the reason recorded, and from then on every request is a 200 from the stable version.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Rollout, RolloutSchema } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeBrokenPackage } from '../fixtures/broken-package.ts'
import { type E2eGateway, startE2eGateway, startGatewayRunner } from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const MODEL = 'fashion-twin'
const DEMO_PACKAGE = fileURLToPath(new URL('../../zoo/fashion/package', import.meta.url))
const EXAMPLE = fileURLToPath(new URL('../../docs/examples/ankle-boot.json', import.meta.url))
const VERSION_HEADER = 'x-twinserve-model-version'
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-rollout-'))
let gw: E2eGateway
let key: string
let body: unknown
let versions: { stable: string; broken: string }
const runners: RunnerProcess[] = []

async function admin(method: string, path: string, json?: unknown): Promise<Rollout> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${gw.admin}`,
      ...(json === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(json === undefined ? {} : { body: JSON.stringify(json) }),
  })
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return RolloutSchema.parse(JSON.parse(text))
}

interface Served {
  user: string
  status: number
  version: string | null
  runner: string | null
  json: Record<string, unknown>
}

const send = async (user: string): Promise<Served> => {
  const r = await gw.infer(key, MODEL, body, { 'x-twinserve-user': user })
  return {
    user,
    status: r.status,
    version: r.headers.get(VERSION_HEADER),
    runner: r.headers.get('x-twinserve-runner'),
    json: r.json,
  }
}

/** An ankle boot is class 9 in Fashion-MNIST: the stable package's answer must say so. */
function expectStableAnswer(s: Served): void {
  expect(s.status, JSON.stringify(s.json)).toBe(200)
  expect(s.version).toBe(versions.stable)
  expect(s.runner).toBe('stable')
  const logits = (s.json.outputs as { name: string; shape: number[]; data: number[] }[]).find(
    (o) => o.name === 'logits',
  )
  expect(logits?.shape).toEqual([1, 10])
  const data = logits?.data ?? []
  expect(data.indexOf(Math.max(...data))).toBe(9)
}

beforeAll(async () => {
  body = JSON.parse(await readFile(EXAMPLE, 'utf8'))
  versions = await writeBrokenPackage(DEMO_PACKAGE, join(root, 'broken'))
  gw = await startE2eGateway({
    RATE_LIMIT_RPS: '100000',
    RATE_LIMIT_BURST: '100000',
    // Outcomes written and judged quickly, so the rollback comes within the test's seconds.
    EXPOSURE_FLUSH_MS: '50',
    GUARDRAIL_CHECK_MS: '0',
  })
  key = await gw.createKey([MODEL])
  runners.push(
    ...(await Promise.all([
      startGatewayRunner(gw, {
        packages: [DEMO_PACKAGE],
        runnerId: 'stable',
        args: ['--group', 'blue'],
      }),
      startGatewayRunner(gw, {
        packages: [join(root, 'broken')],
        runnerId: 'canary',
        args: ['--group', 'blue'],
      }),
    ])),
  )
}, 120_000)

afterAll(async () => {
  await Promise.all(runners.map((r) => r.stop('SIGKILL')))
  await gw?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('canary rollout of a broken package', () => {
  it('rolls the canary back by itself under load; afterwards every request is a 200 from stable', async () => {
    expect(versions.broken).not.toBe(versions.stable)
    const set = await admin('PUT', `/admin/models/${MODEL}/rollout`, {
      stable: versions.stable,
      canary: versions.broken,
      canary_percent: 50,
      group: 'blue',
      guardrails: { max_error_rate: 0.2, min_samples: 10, window: 100 },
    })
    expect(set).toMatchObject({ state: 'active', canary_percent: 50, group: 'blue' })

    // Load from 64 end users, 4 at a time, until the rollout is rolled back (or 15 s pass).
    const users = Array.from({ length: 64 }, (_, i) => `user-${i}`)
    const during: Served[] = []
    let rolledBack: Rollout | undefined
    const until = Date.now() + 15_000
    let next = 0
    const worker = async () => {
      while (!rolledBack && Date.now() < until)
        during.push(await send(users[next++ % users.length] as string))
    }
    const watch = async () => {
      while (!rolledBack && Date.now() < until) {
        const r = await admin('GET', `/admin/models/${MODEL}/rollout`)
        if (r.state === 'rolled_back') rolledBack = r
        else await new Promise((res) => setTimeout(res, 100))
      }
    }
    await Promise.all([watch(), ...Array.from({ length: 4 }, worker)])

    expect(rolledBack, `not rolled back after ${during.length} requests`).toBeDefined()
    const r = rolledBack as Rollout
    expect(r.canary_percent).toBe(0)
    expect(r.reason).toMatch(
      /^guardrail: canary error rate 1\.0000 \(\d+\/\d+ answers 5xx\) exceeds max_error_rate 0\.2$/,
    )
    expect(r.arms.canary.errors).toBeGreaterThanOrEqual(10)
    expect(r.arms.stable.errors).toBe(0)
    expect(r.arms.stable.requests).toBeGreaterThan(0)
    // Under the rollout, the failures were the canary's alone: the runner's 500 saying why, or, once the
    // gateway's circuit breaker had opened on the canary runner, the gateway's 503 (no canary runner to try).
    const failed = during.filter((s) => s.status !== 200)
    expect(failed.length).toBeGreaterThanOrEqual(10)
    for (const s of failed) {
      expect(s.version).toBe(versions.broken)
      if (s.status === 500)
        expect(String(s.json.error)).toMatch(
          /output 'logits' does not have the batch as dimension 0/,
        )
      else expect([s.status, s.json.code]).toEqual([503, 'NO_RUNNER'])
    }
    expect(failed.filter((s) => s.status === 500).length).toBeGreaterThan(0)
    for (const s of during.filter((x) => x.status === 200)) expectStableAnswer(s)
    expect(gw.logs.some((l) => l.event === 'rollout_rolled_back' && l.model === MODEL)).toBe(true)

    // Everyone, the canary's former users included, is served by stable now.
    const canaryUsers = new Set(failed.map((s) => s.user))
    const after: Served[] = []
    for (let round = 0; round < 2; round++) after.push(...(await Promise.all(users.map(send))))
    after.forEach(expectStableAnswer)
    expect(after.filter((s) => canaryUsers.has(s.user)).length).toBeGreaterThan(0)
  })
})
