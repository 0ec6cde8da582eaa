/**
 * Per-expert telemetry on the runner's `/metrics` (issue #19): after routed requests on a real runner, the
 * counters move exactly as the router's weights say, computed independently by the fixture's JS reference;
 * explicit mixes and fan-outs, which the router did not choose, leave them alone. Abstentions on a package built
 * with the abstain control.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InferenceResponseSchema, ROUTED_WEIGHT_THRESHOLD, signRequest } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TwinFixture, writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { promSample } from '../../../test/support/prometheus-text.ts'
import { writeBuildFixture } from '../../test-support/test-models.ts'
import { buildPackage } from '../build/build-package.ts'
import { createReporter } from '../build/pipeline/progress.ts'
import { RunnerConfigSchema } from '../config.ts'
import { createLogger } from './logger.ts'
import { summarizeRouting } from './routing-telemetry.ts'
import { type Runner, startRunner } from './runner.ts'

describe('summarizeRouting', () => {
  it('counts rows above the threshold, sums weights, and takes each row’s entropy', () => {
    // [3 rows, T=2]: a confident row, an even row, an abstained row.
    const s = summarizeRouting(Float32Array.of(0.95, 0.05, 0.5, 0.5, 0, 0), 2)
    expect(s.rows).toBe(3)
    expect(s.abstained).toBe(1)
    expect(s.routedRows).toEqual([2, 1])
    expect(s.weightSum[0]).toBeCloseTo(1.45, 6)
    expect(s.weightSum[1]).toBeCloseTo(0.55, 6)
    expect(s.entropies).toHaveLength(2)
    expect(s.entropies[0]).toBeCloseTo(-(0.95 * Math.log(0.95) + 0.05 * Math.log(0.05)), 5)
    expect(s.entropies[1]).toBeCloseTo(Math.log(2), 6)
  })
})

const SECRET = 'test-secret-0123456789abcdef'
const root = await mkdtemp(join(tmpdir(), 'twinserve-telemetry-'))
let fx: TwinFixture
let runner: Runner

beforeAll(async () => {
  fx = await writeTwinFixture(join(root, 'pkg'))
  runner = await startRunner(
    RunnerConfigSchema.parse({
      packages: [join(root, 'pkg')],
      port: 0,
      signingSecret: SECRET,
      provider: 'cpu',
      threads: 1,
    }),
    { logger: createLogger({ sink: () => undefined }) },
  )
})
const extra: Runner[] = []
afterAll(async () => {
  for (const r of [runner, ...extra]) await r?.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

async function infer(
  rows: number[][],
  parameters?: Record<string, unknown>,
  on: Runner = runner,
  name = 'tiny-twin',
) {
  const path = `/v2/models/${name}/infer`
  const text = JSON.stringify({
    inputs: [
      {
        name: 'x',
        shape: [rows.length, rows[0]?.length ?? 0],
        datatype: 'FP32',
        data: rows.flat(),
      },
    ],
    ...(parameters ? { parameters } : {}),
  })
  const headers = {
    'content-type': 'application/json',
    ...(await signRequest(SECRET, { method: 'POST', path, body: text })),
  }
  const res = await fetch(`${on.url}${path}`, { method: 'POST', headers, body: text })
  expect(res.status).toBe(200)
  return InferenceResponseSchema.parse(await res.json())
}

const metrics = async (on: Runner = runner) => (await fetch(`${on.url}/metrics`)).text()
const model = { model: 'tiny-twin' }

function example(i: number): number[] {
  return Array.from({ length: 6 }, (_, j) => Math.sin(i * 1.7 + j * 0.9) * 2)
}

describe('per-expert metrics on /metrics', () => {
  it('move as the routed weights say', async () => {
    const rows = Array.from({ length: 12 }, (_, i) => example(i))
    const weights = rows.map((x) => fx.routerWeights(x)) // [rows][T], the independent reference
    // A weight within float noise of the threshold could count either way; this data keeps clear of it.
    for (const w of weights.flat())
      expect(Math.abs(w - ROUTED_WEIGHT_THRESHOLD)).toBeGreaterThan(1e-4)
    const before = await metrics()
    // Two requests (8 + 4 rows), and requests the router did not weigh: an explicit mix and a fan-out.
    await infer(rows.slice(0, 8))
    await infer(rows.slice(8))
    await infer(rows.slice(0, 2), { experts: { alpha: 1 } })
    await infer(rows.slice(0, 2), { fan_out: true })
    const after = await metrics()
    const moved = (name: string, labels: Record<string, string>) =>
      promSample(after, name, labels) - promSample(before, name, labels)

    expect(moved('twinserve_runner_routed_rows_total', model)).toBe(rows.length)
    fx.experts.forEach((expert, j) => {
      const labels = { ...model, expert }
      const above = weights.filter((w) => (w[j] ?? 0) > ROUTED_WEIGHT_THRESHOLD).length
      expect(moved('twinserve_runner_expert_routed_rows_total', labels), expert).toBe(above)
      const sum = weights.reduce((a, w) => a + (w[j] ?? 0), 0)
      expect(moved('twinserve_runner_expert_routed_weight_sum', labels)).toBeCloseTo(sum, 4)
    })
    const entropies = weights.map((w) => -w.reduce((a, p) => a + (p > 0 ? p * Math.log(p) : 0), 0))
    expect(moved('twinserve_runner_router_entropy_nats_count', model)).toBe(rows.length)
    expect(moved('twinserve_runner_router_entropy_nats_sum', model)).toBeCloseTo(
      entropies.reduce((a, b) => a + b, 0),
      4,
    )
    expect(moved('twinserve_runner_router_abstentions_total', model)).toBe(0)
  })

  it('count abstentions: rows whose largest weight is below abstain_below', async () => {
    // The hand-built fixture predates the abstain control; a package built now has it.
    const built = await builtRunner()
    const B = 8
    const x = Array.from({ length: B }, (_, b) =>
      Array.from({ length: 8 }, (_, j) => Math.sin((b * 8 + j) * 0.37) * 2),
    )
    const call = (parameters: Record<string, unknown>) => infer(x, parameters, built, 'built-twin')
    const weights = (await call({ abstain_below: 0 })).outputs.find(
      (o) => o.name === 'expert_weights',
    )
    const T = (weights?.shape[1] ?? 0) as number
    const sure = x.map((_, b) =>
      Math.max(...((weights?.data ?? []) as number[]).slice(b * T, (b + 1) * T)),
    )
    const threshold = [...sure].sort((a, b) => a - b)[B / 2] as number
    const labels = { model: 'built-twin' }
    const before = await metrics(built)
    const answer = await call({ abstain_below: threshold })
    expect(answer.parameters?.abstained_rows).toBe(B / 2)
    const after = await metrics(built)
    const moved = (name: string) =>
      promSample(after, name, labels) - promSample(before, name, labels)
    expect(moved('twinserve_runner_router_abstentions_total')).toBe(B / 2)
    expect(moved('twinserve_runner_routed_rows_total')).toBe(B)
    // Abstained rows applied no expert: no entropy for them, no weight for any expert.
    expect(moved('twinserve_runner_router_entropy_nats_count')).toBe(B / 2)
  })
})

/** A runner over a package built by `twinserve build` (with the abstain control), named built-twin. */
async function builtRunner(): Promise<Runner> {
  const fx = await writeBuildFixture(join(root, 'build'), {
    recipe: {
      name: 'built-twin',
      variants: [],
      router: { data: 'routing.jsonl', hidden: [16], epochs: 20, seed: 1 },
    },
  })
  await buildPackage(fx.recipePath, {
    out: join(root, 'built'),
    reporter: createReporter({ quiet: true }),
  })
  const r = await startRunner(
    RunnerConfigSchema.parse({
      packages: [join(root, 'built')],
      port: 0,
      signingSecret: SECRET,
      provider: 'cpu',
      threads: 1,
    }),
    { logger: createLogger({ sink: () => undefined }) },
  )
  extra.push(r)
  return r
}
