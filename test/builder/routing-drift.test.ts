/**
 * Routing drift (issue #19) on real packages: the builder records the embedded router's distribution on the
 * held-out routing data in the manifest (a full build and a `--from … --add-expert` delta build alike); a runner
 * serving the package reports `twinserve_runner_routing_drift{model}` near 0 while traffic is mixed like the
 * routing data, and near the distance it should be, with the alert gauge at 1 and one warning logged, once all
 * traffic comes from one domain; a package without the field (built before it) serves with no drift series.
 * Small experts' rank, few routing rows and a short router training keep it fast.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RunnerConfigSchema } from '@twinserve/gpu-runner'
import { buildDelta, buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import {
  createLogger,
  RoutingDrift,
  type Runner,
  startRunner,
  totalVariation,
} from '@twinserve/gpu-runner/server'
import {
  type PackageManifest,
  PackageManifestSchema,
  RUNNER_REGISTRY_PATHS,
  type RunnerRegistration,
} from '@twinserve/shared'
import { loadTaskSplit, writeRoutingJsonl } from '@twinserve/zoo/fashion'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../fixtures/twin-fixture.ts'
import { REPO } from '../infra/manifests.ts'
import { promSample } from '../support/prometheus-text.ts'

const MODELS = join(REPO, 'zoo/fashion/models')
const TWO = ['original', 'permuted']
const NEW = 'digits'
const quiet = () => createReporter({ quiet: true })
const root = await mkdtemp(join(tmpdir(), 'twinserve-drift-'))
const runners: Runner[] = []
const logs: Record<string, unknown>[] = []
afterAll(async () => {
  for (const r of runners) await r.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

async function writeRecipe(name: string, experts: string[], routing: string): Promise<string> {
  const path = join(root, `${name}.json`)
  await writeFile(
    path,
    JSON.stringify({
      name: 'fashion-drift',
      base: join(MODELS, 'base.onnx'),
      experts: experts.map((e) => ({ name: e, model: join(MODELS, `experts/${e}.onnx`) })),
      shared: { method: 'task_arithmetic', lambda: 0.3 },
      shared_file: false,
      exclusive: { rank: 4, dtype: 'float16' },
      router: { feature: 'hidden1', data: routing, hidden: [16], epochs: 8, seed: 1 },
      variants: [],
      verify: { examples_per_expert: 2 },
    }),
  )
  return path
}

function writeRouting(path: string, tasks: string[]): void {
  writeRoutingJsonl(
    path,
    tasks.map((task) => {
      const s = loadTaskSplit(task, 'train', { limit: 40 })
      return { expert: task, x: s.x, n: s.n }
    }),
    40,
    1,
  )
}

const manifestOf = (dir: string): PackageManifest =>
  PackageManifestSchema.parse(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')))

async function start(
  pkg: string,
  driftAlert: number,
  gatewayUrl?: string,
  repositoryRoot?: string,
): Promise<Runner> {
  const r = await startRunner(
    RunnerConfigSchema.parse({
      packages: [pkg],
      port: 0,
      insecureLocal: true,
      provider: 'cpu',
      threads: 1,
      driftAlert,
      driftWindowRows: 200,
      ...(gatewayUrl ? { gatewayUrl, signingSecret: 'drift-test-secret-0123456789' } : {}),
      ...(repositoryRoot ? { repositoryRoot } : {}),
    }),
    { logger: createLogger({ sink: (line) => logs.push(JSON.parse(line)) }) },
  )
  runners.push(r)
  return r
}

/** One request; answers the applied expert weights, [n, T] row-major. */
async function infer(r: Runner, model: string, x: Float32Array, n: number): Promise<number[]> {
  const res = await fetch(`${r.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      inputs: [{ name: 'pixels', shape: [n, 784], datatype: 'FP32', data: Array.from(x) }],
      outputs: [{ name: 'logits' }, { name: 'expert_weights' }],
    }),
  })
  expect(res.status).toBe(200)
  const body = (await res.json()) as { outputs: { name: string; data: number[] }[] }
  return body.outputs.find((o) => o.name === 'expert_weights')?.data ?? []
}

/** Column sums of [rows, T] weights. */
function columnSums(rows: number[], T: number): number[] {
  const out = Array<number>(T).fill(0)
  rows.forEach((w, i) => {
    out[i % T] = (out[i % T] as number) + w
  })
  return out
}

const metrics = async (r: Runner) => (await fetch(`${r.url}/metrics`)).text()

describe('total variation and the live window', () => {
  it('is half the L1 distance of the normalised vectors', () => {
    expect(totalVariation([1, 0], [0.5, 0.5])).toBeCloseTo(0.5, 12)
    expect(totalVariation([2, 2], [0.5, 0.5])).toBeCloseTo(0, 12)
    expect(totalVariation([1, 0, 0], [0, 0, 1])).toBeCloseTo(1, 12)
    expect(totalVariation([0, 0], [0.5, 0.5])).toBe(1)
  })

  it('reports nothing before minRows, skips abstained rows, and lets old rows age out', () => {
    const d = new RoutingDrift(
      { rows: 10, meanWeight: [0.5, 0.5], trafficShare: [0.5, 0.5] },
      { windowRows: 4, minRows: 2 },
    )
    d.add(Float32Array.of(1, 0, 0, 0)) // one routed row, one abstained
    expect(d.rows).toBe(1)
    expect(d.value()).toBeUndefined()
    d.add(Float32Array.of(1, 0, 1, 0, 1, 0))
    expect(d.value()).toBeCloseTo(0.5, 6)
    // Four rows of the other expert push every earlier row out of the window.
    d.add(Float32Array.of(0, 1, 0, 1, 0, 1, 0, 1))
    expect(d.rows).toBe(4)
    expect(d.value()).toBeCloseTo(0.5, 6)
    d.add(Float32Array.of(1, 0, 1, 0))
    expect(d.value()).toBeCloseTo(0, 6)
  })
})

describe('drift on real packages', () => {
  let two: PackageManifest
  let three: PackageManifest
  const originals = loadTaskSplit('original', 'test', { limit: 60 })
  const permuted = loadTaskSplit('permuted', 'test', { limit: 60 })

  beforeAll(async () => {
    const r2 = join(root, 'routing-two.jsonl')
    const r3 = join(root, 'routing-three.jsonl')
    writeRouting(r2, TWO)
    writeRouting(r3, [...TWO, NEW])
    await buildPackage(await writeRecipe('two', TWO, r2), {
      out: join(root, 'two'),
      reporter: quiet(),
    })
    await buildDelta(
      await writeRecipe('three', [...TWO, NEW], r3),
      join(root, 'two'),
      [{ op: 'add', name: NEW, model: join(MODELS, `experts/${NEW}.onnx`) }],
      { out: join(root, 'three'), reporter: quiet() },
    )
    two = manifestOf(join(root, 'two'))
    three = manifestOf(join(root, 'three'))
  }, 120_000)

  it('the manifest carries the router’s held-out distribution, for full and delta builds', () => {
    for (const [m, T] of [
      [two, 2],
      [three, 3],
    ] as const) {
      const p = m.routingProfile
      if (!p) throw new Error(`${m.name}: no routingProfile`)
      expect(p.meanWeight).toHaveLength(T)
      expect(p.trafficShare).toHaveLength(T)
      expect(p.meanWeight.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4)
      // Balanced routing data and a working router: every expert gets a real part of the traffic.
      for (const w of p.meanWeight) expect(w).toBeGreaterThan(0.15)
      for (const s of p.trafficShare) expect(s).toBeGreaterThan(0.15)
    }
    // 20% of 80 and of 120 rows are held out.
    expect(two.routingProfile?.rows).toBe(16)
    expect(three.routingProfile?.rows).toBe(24)
  })

  it('mixed traffic: small drift, no alert; one domain only: the alert trips and logs once', async () => {
    const r = await start(join(root, 'two'), 0.2)
    // The routing data's mix: as many originals as permuted, in alternating requests.
    for (let i = 0; i < 60; i += 10) {
      await infer(r, 'fashion-drift', originals.x.subarray(i * 784, (i + 10) * 784), 10)
      await infer(r, 'fashion-drift', permuted.x.subarray(i * 784, (i + 10) * 784), 10)
    }
    let text = await metrics(r)
    const mixed = promSample(text, 'twinserve_runner_routing_drift', { model: 'fashion-drift' })
    expect(text).toMatch(/^twinserve_runner_routing_drift\{model="fashion-drift"\} /m)
    expect(mixed).toBeLessThan(0.15)
    expect(
      promSample(text, 'twinserve_runner_routing_drift_alert', { model: 'fashion-drift' }),
    ).toBe(0)
    expect(logs.filter((l) => String(l.msg).startsWith('routing drift alert'))).toHaveLength(0)
    // Only permuted images from now on: 240 rows, so the window (200) holds nothing else. The drift is then the
    // distance of those rows' mean weights (as the runner answered them) from the build-time profile.
    const answered: number[] = []
    for (let k = 0; k < 4; k++)
      answered.push(...(await infer(r, 'fashion-drift', permuted.x, permuted.n)))
    const lastRows = answered.slice(-200 * 2)
    const want = totalVariation(columnSums(lastRows, 2), two.routingProfile?.meanWeight ?? [])
    text = await metrics(r)
    const shifted = promSample(text, 'twinserve_runner_routing_drift', { model: 'fashion-drift' })
    expect(shifted).toBeCloseTo(want, 4)
    expect(shifted).toBeGreaterThan(0.2)
    expect(shifted).toBeGreaterThan(mixed + 0.1)
    expect(
      promSample(text, 'twinserve_runner_routing_drift_alert', { model: 'fashion-drift' }),
    ).toBe(1)
    await metrics(r)
    const alerts = logs.filter((l) => String(l.msg).startsWith('routing drift alert'))
    expect(alerts).toHaveLength(1)
    expect(alerts[0]).toMatchObject({ model: 'fashion-drift', threshold: 0.2 })
  })

  it('heartbeats carry the drift the metric shows, once there is one', async () => {
    // A plain HTTP receiver in the gateway's place: it records registrations and asks for 50 ms heartbeats.
    const seen: RunnerRegistration[] = []
    const gateway = createServer((req, res) => {
      let body = ''
      req.on('data', (c) => {
        body += c
      })
      req.on('end', () => {
        if (
          req.url === RUNNER_REGISTRY_PATHS.register ||
          req.url === RUNNER_REGISTRY_PATHS.heartbeat
        )
          seen.push(JSON.parse(body) as RunnerRegistration)
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ ok: true, heartbeat_interval_ms: 50 }))
      })
    })
    await new Promise<void>((ok) => gateway.listen(0, '127.0.0.1', ok))
    try {
      const r = await start(
        join(root, 'two'),
        0.2,
        `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`,
      )
      await new Promise((ok) => setTimeout(ok, 150))
      expect(seen.length).toBeGreaterThan(0)
      expect(seen.at(-1)?.models[0]?.routing_drift).toBeUndefined()
      for (let k = 0; k < 2; k++) await infer(r, 'fashion-drift', permuted.x, permuted.n)
      const shown = promSample(await metrics(r), 'twinserve_runner_routing_drift', {
        model: 'fashion-drift',
      })
      const from = seen.length
      while (seen.length < from + 2) await new Promise((ok) => setTimeout(ok, 20))
      expect(shown).toBeGreaterThan(0)
      expect(seen.at(-1)?.models[0]?.routing_drift).toBeCloseTo(shown, 12)
    } finally {
      gateway.closeAllConnections()
      await new Promise((ok) => gateway.close(ok))
    }
  })

  it('an unloaded model reports no drift any more', async () => {
    const r = await start(join(root, 'two'), 0.2, undefined, root)
    for (let k = 0; k < 2; k++) await infer(r, 'fashion-drift', permuted.x, permuted.n)
    const series = /^twinserve_runner_routing_drift(_alert)?\{model="fashion-drift"\} /gm
    expect((await metrics(r)).match(series)).toHaveLength(2)
    const res = await fetch(`${r.url}/v2/repository/models/fashion-drift/unload`, {
      method: 'POST',
    })
    expect(res.status).toBe(200)
    expect((await metrics(r)).match(series)).toBeNull()
  })

  it('a package built before the field serves with no drift series', async () => {
    await writeTwinFixture(join(root, 'old'), { seed: 1 })
    expect(manifestOf(join(root, 'old')).routingProfile).toBeUndefined()
    const r = await start(join(root, 'old'), 0.2)
    const res = await fetch(`${r.url}/v2/models/tiny-twin/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          { name: 'x', shape: [1, 6], datatype: 'FP32', data: [0.5, -1, 2, 0.25, 1.5, -0.75] },
        ],
      }),
    })
    expect(res.status).toBe(200)
    const text = await metrics(r)
    expect(promSample(text, 'twinserve_runner_routed_rows_total', { model: 'tiny-twin' })).toBe(1)
    expect(text).not.toMatch(/^twinserve_runner_routing_drift(_alert)?\{/m)
  })
})
