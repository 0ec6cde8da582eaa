/**
 * The experiments dashboard with real data in a real browser: the gateway (wrangler dev) in front of a runner
 * process on the bundled demo package, an experiment of twin routing against the static TIES variant, simulated
 * users sending Fashion-MNIST test images with label feedback; then headless Chromium (Debian's) opens
 * /dashboard and the test checks that the table shows the API's numbers and that every chart drew each arm in
 * its colour (counted in a screenshot).
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { packageVersion, readManifest } from '@twinserve/gpu-runner/package'
import { type ExperimentResults, RolloutSchema } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createAndStart,
  experimentResults,
  simulateUsers,
  type TrafficResult,
  twinVersusTies,
} from '../support/ab-traffic.ts'
import { viewDashboard } from '../support/dashboard-browser.ts'
import { type E2eGateway, startE2eGateway, startGatewayRunner } from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const DEMO_PACKAGE = fileURLToPath(new URL('../../zoo/fashion/package', import.meta.url))
const MODEL = 'fashion-twin'

let gw: E2eGateway
let runner: RunnerProcess
let traffic: TrafficResult
let results: ExperimentResults
let key: string

beforeAll(async () => {
  gw = await startE2eGateway({
    EXPOSURE_FLUSH_MS: '50',
    GUARDRAIL_CHECK_MS: '1000',
    // The simulated users send faster than the default 50 requests/s per key.
    RATE_LIMIT_RPS: '1000',
    RATE_LIMIT_BURST: '1000',
  })
  runner = await startGatewayRunner(gw, { packages: [DEMO_PACKAGE], runnerId: 'dashboard-runner' })
  key = await gw.createKey([MODEL])
  const e = await createAndStart(gw, twinVersusTies(MODEL, { statistics: { burn_in: 10 } }))
  traffic = await simulateUsers({
    gatewayUrl: gw.url,
    key,
    model: MODEL,
    users: 40,
    requests: 120,
    concurrency: 4,
    seed: 1,
    imagesPerTask: 200,
  })
  results = await experimentResults(gw, e.id)
}, 180_000)

afterAll(async () => {
  await runner?.stop()
  await gw?.stop()
})

describe('experiments dashboard in headless Chromium', () => {
  it('the run itself: every request enrolled, sticky per user, rewards as the client scored them', () => {
    expect(traffic.failed).toBe(0)
    expect(traffic.unenrolled).toBe(0)
    for (const arms of traffic.armsOfUser.values()) expect(arms.size).toBe(1)
    for (const a of results.arms) {
      const mine = traffic.byArm[a.arm]
      expect(a.n).toBe(mine?.served)
      expect(a.feedback).toBe(mine?.served)
      expect(a.reward?.mean).toBeCloseTo((mine?.correct ?? 0) / (mine?.served ?? 1), 12)
    }
  })

  it('renders the experiment’s real data and draws every chart', async () => {
    const view = await viewDashboard({ gatewayUrl: gw.url, adminKey: gw.admin, arms: 2 })
    const out = process.env.DASHBOARD_SCREENSHOT
    if (out) {
      await mkdir(dirname(out), { recursive: true })
      await writeFile(out, view.screenshot)
    }
    expect(view.problems).toEqual([])
    expect(view.title).toBe(`twin routing vs static TIES — ${MODEL}`)
    expect(view.rows.map((r) => r.arm)).toEqual(['ties', 'twin'])
    for (const row of view.rows) {
      const a = results.arms.find((x) => x.arm === row.arm)
      expect(row.n).toBe(String(a?.n))
      expect(row.feedback).toBe(String(a?.feedback))
      expect(row.reward).toContain((a?.reward?.mean ?? Number.NaN).toFixed(3))
    }
    const twin = results.arms.find((a) => a.arm === 'twin')
    const p = twin?.versus_control?.p_value ?? Number.NaN
    expect(view.rows[1]?.['p-value']).toBe(p < 1e-4 ? p.toExponential(1) : p.toFixed(4))
    expect(view.verdicts[0]).toMatch(/^twin: /)

    // Every chart drew in the arms' colours: both arms in the reward, traffic and latency charts; the p-value
    // chart compares twin with the control, so it has twin's line only.
    const [ties, tw] = [0, 1]
    for (const id of ['chart-reward', 'chart-traffic', 'chart-latency']) {
      expect(view.colorPixels[id]?.[ties], `${id}: ties`).toBeGreaterThan(40)
      expect(view.colorPixels[id]?.[tw], `${id}: twin`).toBeGreaterThan(40)
    }
    expect(view.colorPixels['chart-pvalue']?.[tw]).toBeGreaterThan(40)
    expect(view.colorPixels['chart-pvalue']?.[ties]).toBeLessThan(40)
  }, 60_000)

  it('shows the model’s rollout: state, share, per-arm requests and errors, and the reason', async () => {
    const stable = packageVersion(await readManifest(DEMO_PACKAGE))
    const admin = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${gw.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${gw.admin}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      })
      expect(res.status).toBe(200)
      return RolloutSchema.parse(await res.json())
    }
    // A canary version no runner announces: its share falls back to stable, so stable serves all 12.
    await admin('PUT', `/admin/models/${MODEL}/rollout`, {
      stable,
      canary: 'ffffffffffff',
      canary_percent: 20,
    })
    const image = JSON.parse(
      await readFile(
        fileURLToPath(new URL('../../docs/examples/ankle-boot.json', import.meta.url)),
        'utf8',
      ),
    )
    for (let i = 0; i < 12; i++) {
      const r = await gw.infer(key, MODEL, image, { 'x-twinserve-user': `rollout-user-${i}` })
      expect(r.status).toBe(200)
      expect(r.headers.get('x-twinserve-model-version')).toBe(stable)
    }
    for (let i = 0; i < 100; i++) {
      if ((await admin('GET', `/admin/models/${MODEL}/rollout`)).arms.stable.requests === 12) break
      await new Promise((r) => setTimeout(r, 50))
    }
    const back = await admin('POST', `/admin/models/${MODEL}/rollout/rollback`)
    expect(back.state).toBe('rolled_back')

    const view = await viewDashboard({ gatewayUrl: gw.url, adminKey: gw.admin, arms: 2 })
    expect(view.problems).toEqual([])
    expect(view.rollouts).toEqual([
      {
        model: MODEL,
        state: 'rolled_back',
        percent: '0.0%',
        group: 'any',
        stable: expect.stringMatching(
          new RegExp(`^${stable}: 12 req, 0 err \\(0\\.0%\\), p95 \\d+ ms$`),
        ),
        canary: 'ffffffffffff: 0 req, 0 err (–), p95 – ms',
        'p-value': '1.0000',
        reason: back.reason,
      },
    ])
    expect(back.reason).toMatch(/^rolled back by /)
  }, 60_000)

  it('shows nothing without a key', async () => {
    const res = await fetch(`${gw.url}/admin/experiments`)
    expect(res.status).toBe(401)
  })
})
