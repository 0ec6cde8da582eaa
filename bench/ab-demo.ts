/**
 * The A/B end-to-end run (issue 8, "Done when"): the real gateway (wrangler dev) in front of a real runner
 * process on the bundled demo package; an experiment of twin routing against the package's static TIES variant
 * (control), split 50/50 by user; simulated users sending Fashion-MNIST test-split images with label feedback,
 * until the always-valid test decides (or the request budget ends). Then an A/A run on the same traffic (twin
 * against twin) as the calibration: its p-value should stay above α. The dashboard is opened in headless
 * Chromium and its screenshot saved.
 *
 *   node --import tsx bench/ab-demo.ts [--max-requests 3000] [--min-requests 400] [--users 300]
 *     [--concurrency 8] [--seed 1] [--screenshot bench/ab-demo-dashboard.png]
 *
 * Prints a markdown section for bench/RESULTS.md.
 * @module
 */
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { ExperimentResults } from '@twinserve/shared'
import {
  createAndStart,
  experimentResults,
  simulateUsers,
  type TrafficResult,
  twinVersusTies,
} from '../test/support/ab-traffic.ts'
import { viewDashboard } from '../test/support/dashboard-browser.ts'
import { startE2eGateway, startGatewayRunner } from '../test/support/gateway-harness.ts'

const { values: args } = parseArgs({
  options: {
    'max-requests': { type: 'string', default: '3000' },
    'min-requests': { type: 'string', default: '400' },
    users: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    seed: { type: 'string', default: '1' },
    screenshot: { type: 'string', default: 'bench/ab-demo-dashboard.png' },
  },
})
const MAX = Number(args['max-requests'])
const MIN = Number(args['min-requests'])
const MODEL = 'fashion-twin'
const DEMO_PACKAGE = fileURLToPath(new URL('../zoo/fashion/package', import.meta.url))

/** What the package was built with, from its manifest: the section must describe the package that ran. */
function packageRecipe(): string {
  const { recipe } = JSON.parse(readFileSync(join(DEMO_PACKAGE, 'manifest.json'), 'utf8')) as {
    recipe?: { shared?: Record<string, unknown>; exclusive?: Record<string, unknown> }
  }
  const { experts: _experts, ...shared } = recipe?.shared ?? {}
  return `shared ${JSON.stringify(shared)}, exclusive ${JSON.stringify(recipe?.exclusive ?? {})}`
}

function firstCrossing(r: ExperimentResults, arm: string): number | undefined {
  const alpha = r.arms.find((a) => a.arm === arm)?.versus_control?.alpha ?? 0.05
  return r.p_value_history[arm]?.find((p) => p.p_value <= alpha)?.rewards
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? Number.NaN
}

function armTable(r: ExperimentResults, t: TrafficResult): string {
  const lines = [
    '| arm | exposures | feedback | accuracy (mean reward) [95% CI] | Δ vs control [always-valid CI] | always-valid p | decision | gateway p50 / p95 ms | client p50 / p95 ms |',
    '| --- | ---: | ---: | --- | --- | ---: | --- | ---: | ---: |',
  ]
  for (const a of r.arms) {
    const v = a.versus_control
    const lat = t.byArm[a.arm]?.latencies ?? []
    lines.push(
      `| ${a.arm}${a.control ? ' (control)' : ''} | ${a.n} | ${a.feedback} | ${a.reward ? `${a.reward.mean.toFixed(3)} [${a.reward.ci95[0].toFixed(3)}, ${a.reward.ci95[1].toFixed(3)}]` : '–'} | ${v ? `${v.difference >= 0 ? '+' : ''}${v.difference.toFixed(3)}${v.confidence_sequence ? ` [${v.confidence_sequence[0].toFixed(3)}, ${v.confidence_sequence[1].toFixed(3)}]` : ''}` : '–'} | ${v ? v.p_value.toExponential(2) : '–'} | ${a.decision} | ${a.latency_ms ? `${a.latency_ms.p50.toFixed(0)} / ${a.latency_ms.p95.toFixed(0)}` : '–'} | ${lat.length ? `${quantile(lat, 0.5).toFixed(1)} / ${quantile(lat, 0.95).toFixed(1)}` : '–'} |`,
    )
  }
  return lines.join('\n')
}

async function main() {
  const started = Date.now()
  const gw = await startE2eGateway({
    EXPOSURE_FLUSH_MS: '100',
    GUARDRAIL_CHECK_MS: '2000',
    RATE_LIMIT_RPS: '10000',
    RATE_LIMIT_BURST: '10000',
  })
  const runner = await startGatewayRunner(gw, { packages: [DEMO_PACKAGE], runnerId: 'ab-demo' })
  try {
    const key = await gw.createKey([MODEL])
    const traffic = {
      gatewayUrl: gw.url,
      key,
      model: MODEL,
      users: Number(args.users),
      requests: MAX,
      concurrency: Number(args.concurrency),
      imagesPerTask: 10_000,
      checkEvery: 100,
    }

    // A/B: twin routing against the static TIES variant, until the test decides (at least MIN requests).
    const ab = await createAndStart(
      gw,
      twinVersusTies(MODEL, { guardrails: { max_error_rate: 0.05, max_p95_latency_ms: 2000 } }),
    )
    const abTraffic = await simulateUsers({
      ...traffic,
      seed: Number(args.seed),
      shouldStop: async (sent) => {
        if (sent < MIN) return false
        const r = await experimentResults(gw, ab.id)
        return r.arms.some((a) => a.decision === 'arm_better' || a.decision === 'arm_worse')
      },
    })
    const abResults = await experimentResults(gw, ab.id)
    const view = await viewDashboard({ gatewayUrl: gw.url, adminKey: gw.admin, arms: 2 })
    await import('node:fs/promises').then((fs) => fs.writeFile(args.screenshot, view.screenshot))
    await fetch(`${gw.url}/admin/experiments/${ab.id}/stop`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'decided' }),
    })

    // A/A on the same kind of traffic and as many requests: both arms twin routing.
    const aa = await createAndStart(gw, {
      ...twinVersusTies(MODEL),
      name: 'A/A: twin vs twin',
      arms: [
        { name: 'twin-a', weight: 50, control: true, parameters: {} },
        { name: 'twin-b', weight: 50, parameters: {} },
      ],
    })
    const aaTraffic = await simulateUsers({
      ...traffic,
      requests: abTraffic.sent,
      seed: Number(args.seed) + 1,
    })
    const aaResults = await experimentResults(gw, aa.id)

    const twin = abResults.arms.find((a) => a.arm === 'twin')
    const sticky = [...abTraffic.armsOfUser.values()].every((s) => s.size === 1)
    const cpu = cpus()[0]?.model ?? 'unknown'
    const wall = ((Date.now() - started) / 1000).toFixed(0)
    console.log(`## A/B end to end: twin routing vs static TIES on the demo package (bench/ab-demo.ts)

- **Command:** \`node --import tsx bench/ab-demo.ts\` (defaults: ≤ ${MAX} requests, ≥ ${MIN} before stopping on a
  decision, ${args.users} simulated users, ${args.concurrency} at a time, seed ${args.seed}); wall ${wall} s.
- **Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** ${cpus().length} cores (nproc), ${cpu}; runner on CPU
  (onnxruntime-node, 1 intra-op thread); gateway in workerd (wrangler dev), local D1.
- **Setup:** real gateway + real runner process on \`zoo/fashion/package\` (\`fashion-twin\`, ${packageRecipe()}); users
  (x-twinserve-user, 50/50 by murmur3 bucket) each send test-split images of one Fashion-MNIST domain (original,
  inverted, rotated, permuted, blur-noise) and answer with label feedback; the gateway scores the label against the
  argmax it recorded. mSPRT: τ = 0.1, burn-in 20 per arm, α = 0.05.

**A/B** (${abTraffic.sent} requests; stopped ${abTraffic.stoppedEarly ? 'at the first check after the decision' : 'at the request budget'}; every user stayed on one arm: ${sticky}):

${armTable(abResults, abTraffic)}

The always-valid p-value of twin against TIES first went below α after ${firstCrossing(abResults, 'twin') ?? 'n/a'} rewards (both arms
together); decision: **${twin?.decision}**. Screenshot of the dashboard at that point: \`${args.screenshot}\`.

**A/A calibration** (twin vs twin, ${aaTraffic.sent} requests, same traffic generator, seed ${Number(args.seed) + 1}):

${armTable(aaResults, aaTraffic)}
`)
  } finally {
    await runner.stop()
    await gw.stop()
  }
}

await main()
