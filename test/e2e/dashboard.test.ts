/**
 * The experiments dashboard with real data in a real browser: the gateway (wrangler dev) in front of a runner
 * process on the bundled demo package, an experiment of twin routing against the static TIES variant, simulated
 * users sending Fashion-MNIST test images with label feedback; then headless Chromium (Debian's) opens
 * /dashboard and the test checks that the table shows the API's numbers and that every chart drew each arm in
 * its colour (counted in a screenshot). The twin arm's routed rows reach the gateway's per-expert counters (issue
 * #19) from the runner's routing summaries: the gateway's /metrics equal the runner's own per-expert counters,
 * and the dashboard's routing panel shows the shares, mean weights and entropy computed from them.
 */
import { readFileSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { packageVersion, readManifest } from '@twinserve/gpu-runner/package'
import { type ExperimentResults, type GatewayMetrics, RolloutSchema } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO } from '../infra/manifests.ts'
import {
  createAndStart,
  experimentResults,
  simulateUsers,
  type TrafficResult,
  twinVersusTies,
} from '../support/ab-traffic.ts'
import { viewDashboard } from '../support/dashboard-browser.ts'
import { type E2eGateway, startE2eGateway, startGatewayRunner } from '../support/gateway-harness.ts'
import { promSample } from '../support/prometheus-text.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const DEMO_PACKAGE = fileURLToPath(new URL('../../zoo/fashion/package', import.meta.url))
const MODEL = 'fashion-twin'

let gw: E2eGateway
let runner: RunnerProcess
let traffic: TrafficResult
let results: ExperimentResults
/** The gateway's metrics once its routed-row count matches the runner's (flushes are batched). */
let gwMetrics: GatewayMetrics
let runnerText = ''
const EXPERTS = ['blur-noise', 'digits', 'inverted', 'original', 'permuted', 'rotated']

/** The sum of a gateway family's samples whose labels include `labels`. */
function gwSample(m: GatewayMetrics, name: string, labels: Record<string, string>): number {
  const f = m.families.find((x) => x.name === name)
  return (f?.samples ?? [])
    .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0)
}
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
  runnerText = await (await fetch(`${runner.url}/metrics`)).text()
  const want = promSample(runnerText, 'twinserve_runner_routed_rows_total', { model: MODEL })
  for (let i = 0; i < 100; i++) {
    gwMetrics = await gw.metrics()
    if (gwSample(gwMetrics, 'twinserve_gateway_routed_rows_total', { model: MODEL }) >= want) break
    await new Promise((r) => setTimeout(r, 100))
  }
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

  it("the gateway's per-expert counters equal the runner's own, from the routed (twin) requests only", () => {
    const routed = promSample(runnerText, 'twinserve_runner_routed_rows_total', { model: MODEL })
    // One row per twin request; the TIES arm is a variant, not routed.
    expect(routed).toBe(traffic.byArm.twin?.served)
    expect(gwSample(gwMetrics, 'twinserve_gateway_routed_rows_total', { model: MODEL })).toBe(
      routed,
    )
    expect(
      gwSample(gwMetrics, 'twinserve_gateway_router_abstentions_total', { model: MODEL }),
    ).toBe(promSample(runnerText, 'twinserve_runner_router_abstentions_total', { model: MODEL }))
    expect(
      gwSample(gwMetrics, 'twinserve_gateway_router_entropy_sum', { model: MODEL }),
    ).toBeCloseTo(
      promSample(runnerText, 'twinserve_runner_router_entropy_nats_sum', { model: MODEL }),
      1,
    )
    let shares = 0
    for (const expert of EXPERTS) {
      const labels = { model: MODEL, expert }
      const rows = gwSample(gwMetrics, 'twinserve_gateway_expert_routed_rows_total', labels)
      expect(rows, expert).toBe(
        promSample(runnerText, 'twinserve_runner_expert_routed_rows_total', labels),
      )
      // The summary carries 4 decimals per request: the sums agree to that over the requests.
      expect(
        Math.abs(
          gwSample(gwMetrics, 'twinserve_gateway_expert_routed_weight_sum', labels) -
            promSample(runnerText, 'twinserve_runner_expert_routed_weight_sum', labels),
        ),
        expert,
      ).toBeLessThan(routed * 1e-4)
      shares += rows
    }
    // Fashion images of six domains: the traffic is spread, not all on one expert.
    expect(shares).toBeGreaterThanOrEqual(routed)
    const sample = gwMetrics.families.find(
      (f) => f.name === 'twinserve_gateway_expert_routed_rows_total',
    )
    for (const s of sample?.samples ?? []) expect(EXPERTS).toContain(s.labels.expert)
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

    // The routing panel: the gateway's counters, as shares and means (the page may have read them a flush
    // later than the test; the twin arm's traffic had ended by then, so they are the same).
    const routed = gwSample(gwMetrics, 'twinserve_gateway_routed_rows_total', { model: MODEL })
    const abstained = gwSample(gwMetrics, 'twinserve_gateway_router_abstentions_total', {
      model: MODEL,
    })
    const entropy = gwSample(gwMetrics, 'twinserve_gateway_router_entropy_sum', { model: MODEL })
    // The demo package carries a build-time routing profile (rebuilt for issue #18); a runner reports drift once
    // its live window holds enough routed rows (gpu-runner/src/server/routing-drift.ts), '–' before that.
    const drift = (
      gwMetrics.families.find((f) => f.name === 'twinserve_gateway_routing_drift')?.samples ?? []
    )
      .filter((x) => x.labels.model === MODEL)
      .map((x) => x.value)
    expect(view.routing.models).toEqual([
      [
        MODEL,
        String(routed),
        (entropy / (routed - abstained)).toFixed(3),
        `${((100 * abstained) / routed).toFixed(1)}%`,
        drift.length > 0 ? Math.max(...drift).toFixed(3) : '–',
      ],
    ])
    expect(view.routing.experts.map((r) => r[1])).toEqual(EXPERTS)
    for (const [model, expert, share, mean, rows] of view.routing.experts) {
      const labels = { model: model ?? '', expert: expert ?? '' }
      const n = gwSample(gwMetrics, 'twinserve_gateway_expert_routed_rows_total', labels)
      const w = gwSample(gwMetrics, 'twinserve_gateway_expert_routed_weight_sum', labels)
      expect(model).toBe(MODEL)
      expect(rows, expert).toBe(String(n))
      expect(share, expert).toBe(`${((100 * n) / routed).toFixed(1)}%`)
      expect(mean, expert).toBe((w / routed).toFixed(3))
    }
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

  it("keeps the runner's routing summary to itself: callers get no x-twinserve-routing header", async () => {
    const key = await gw.createKey([MODEL])
    const body = JSON.parse(readFileSync(join(REPO, 'docs/examples/ankle-boot.json'), 'utf8'))
    const routedRows = async () =>
      promSample(
        await (await fetch(`${runner.url}/metrics`)).text(),
        'twinserve_runner_routed_rows_total',
        {
          model: MODEL,
        },
      )
    // New users until one is assigned the twin arm (routed; the TIES arm is a variant the router does not weigh).
    let twin = false
    for (let u = 0; u < 20 && !twin; u++) {
      const before = await routedRows()
      const res = await gw.infer(key, MODEL, body, { 'x-twinserve-user': `header-check-${u}` })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-twinserve-routing')).toBeNull()
      twin = res.headers.get('x-twinserve-arm') === 'twin'
      if (twin) expect(await routedRows()).toBe(before + 1)
    }
    expect(twin).toBe(true)
  })
})
