/**
 * A 7th expert added to the running demo model under load (issue #19's "done when"), runner-direct (a runner
 * process on the bundled demo package, unsigned; the gateway's part of a swap is test/e2e/runner-hot-swap.test.ts).
 *
 * The zoo has six experts and the demo package holds all of them, so the test makes a 7th: `checker`, Fashion
 * images seen through a fixed checkerboard mask (every other pixel dark), fine-tuned from the zoo's base.onnx
 * for two short epochs and exported with the zoo's graph. The routing data gets rows of all seven domains. Then,
 * while four clients keep sending images of every domain:
 * - `twinserve build <recipe> --from zoo/fashion/package --add-expert checker=<onnx>` (the CLI, as a user runs it),
 * - `POST /v2/repository/models/fashion-twin/load` with the new package;
 * and the test checks: 0 failed requests, answers from both versions, the new expert served by the next request
 * with an explicit mix `{"experts": {"checker": 1}}`, most checkerboard test images routed to it (top weight),
 * and the new version's drift series (its manifest has the build-time routing profile) and checker's counters.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { readOnnxBytes } from '@twinserve/gpu-runner/build'
import { exportMlpOnnx, type MlpWeights, trainMlp } from '@twinserve/gpu-runner/train'
import { type InferenceResponse, PackageManifestSchema } from '@twinserve/shared'
import { loadTaskSplit, writeRoutingJsonl, ZOO_TASK_NAMES } from '@twinserve/zoo/fashion'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO } from '../infra/manifests.ts'
import { promSample } from '../support/prometheus-text.ts'
import { type RunnerProcess, startRunnerProcess, TWINSERVE_BIN } from '../support/runner-harness.ts'

const exec = promisify(execFile)
const DEMO = join(REPO, 'zoo/fashion/package')
const MODELS = join(REPO, 'zoo/fashion/models')
const MODEL = 'fashion-twin'
const NEW = 'checker'
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-add-expert-'))
const repo = join(root, 'repo')
let runner: RunnerProcess

/** The new domain: every other pixel (a checkerboard) set to 0. */
function checker(x: Float32Array): Float32Array {
  const out = new Float32Array(x)
  for (let i = 0; i < out.length; i++) {
    const p = i % 784
    if (((p % 28) + Math.floor(p / 28)) % 2 === 1) out[i] = 0
  }
  return out
}

/** base.onnx's weights (fc1..fc3, [in, out] row-major as the zoo exports them). */
function baseWeights(): MlpWeights {
  const init = readOnnxBytes(readFileSync(join(MODELS, 'base.onnx')), 'base.onnx').initializers
  const f32 = (name: string) => {
    const raw = init.get(name)?.rawData
    if (!raw) throw new Error(`base.onnx has no ${name}`)
    return new Float32Array(new Uint8Array(raw).slice().buffer)
  }
  const sizes = [784, 256, 128, 10]
  return {
    sizes,
    layers: [1, 2, 3].map((i) => ({ weight: f32(`fc${i}.weight`), bias: f32(`fc${i}.bias`) })),
  }
}

async function trainChecker(path: string): Promise<void> {
  const train = loadTaskSplit('original', 'train', { limit: 1200 })
  const r = await trainMlp({
    layers: [784, 256, 128, 10],
    init: baseWeights(),
    x: checker(train.x),
    y: train.y,
    epochs: 2,
    lr: 0.002,
    batchSize: 64,
    seed: 7,
    threads: 1,
  })
  const bytes = exportMlpOnnx(r.weights, {
    inputName: 'pixels',
    outputName: 'logits',
    graphName: 'twinserve_zoo_mlp',
  })
  await writeFile(path, bytes)
}

/** The demo's recipe as its manifest records it, with absolute model paths and a routing file of 7 domains. */
async function writeRecipe(routing: string): Promise<string> {
  const manifest = PackageManifestSchema.parse(
    JSON.parse(readFileSync(join(DEMO, 'manifest.json'), 'utf8')),
  )
  const recipe = manifest.recipe as Record<string, unknown> & {
    experts: { name: string; model: string }[]
    router: Record<string, unknown>
  }
  const path = join(root, 'recipe.json')
  await writeFile(
    path,
    JSON.stringify({
      ...recipe,
      base: join(MODELS, 'base.onnx'),
      experts: recipe.experts.map((e) => ({ ...e, model: join(MODELS, `experts/${e.name}.onnx`) })),
      // Few routing rows and epochs: the refit must take seconds here, not minutes.
      router: { ...recipe.router, data: routing, epochs: 15, patience: 5 },
      verify: { examples_per_expert: 4 },
    }),
  )
  return path
}

interface Outcome {
  status: number
  version?: string
}

async function infer(body: unknown): Promise<{ status: number; json: InferenceResponse }> {
  const res = await fetch(`${runner.url}/v2/models/${MODEL}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  return { status: res.status, json: (await res.json()) as InferenceResponse }
}

const pixels = (x: Float32Array, n: number, parameters?: Record<string, unknown>) => ({
  inputs: [{ name: 'pixels', shape: [n, 784], datatype: 'FP32', data: Array.from(x) }],
  outputs: [{ name: 'logits' }, { name: 'expert_weights' }],
  ...(parameters ? { parameters } : {}),
})

const outcomes: Outcome[] = []
let loadAnswer: Record<string, unknown> = {}
let oldVersion = ''

beforeAll(async () => {
  await mkdir(repo)
  const onnx = join(root, `${NEW}.onnx`)
  await trainChecker(onnx)
  const routing = join(root, 'routing.jsonl')
  const sources = ZOO_TASK_NAMES.map((task) => {
    const s = loadTaskSplit(task, 'train', { limit: 60 })
    return { expert: task as string, x: s.x, n: s.n }
  })
  const fresh = loadTaskSplit('original', 'val', { limit: 60 })
  sources.push({ expert: NEW, x: checker(fresh.x), n: fresh.n })
  writeRoutingJsonl(routing, sources, 60, 1)
  const recipe = await writeRecipe(routing)

  runner = await startRunnerProcess({
    packages: [DEMO],
    insecureLocal: true,
    args: ['--repository-root', repo],
  })
  oldVersion = (await infer(pixels(fresh.x.subarray(0, 784), 1))).json.model_version ?? ''

  // Load: four clients, images of every domain, until the swap has been answered and a little after.
  const images = ZOO_TASK_NAMES.map((t) => loadTaskSplit(t, 'test', { limit: 8 }))
  let stop = false
  const client = async (c: number) => {
    for (let i = c; !stop; i += 4) {
      const s = images[i % images.length]
      if (!s) continue
      const k = i % s.n
      const r = await infer(pixels(s.x.subarray(k * 784, (k + 1) * 784), 1)).catch(() => undefined)
      outcomes.push({ status: r?.status ?? 0, version: r?.json.model_version })
    }
  }
  const clients = [0, 1, 2, 3].map(client)
  try {
    await exec(
      process.execPath,
      [
        TWINSERVE_BIN,
        'build',
        recipe,
        '--from',
        DEMO,
        '--add-expert',
        `${NEW}=${onnx}`,
        '--out',
        join(repo, 'fashion-v2'),
        '--quiet',
      ],
      { cwd: REPO },
    )
    const res = await fetch(`${runner.url}/v2/repository/models/${MODEL}/load`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ parameters: { package: 'fashion-v2' } }),
    })
    loadAnswer = { status: res.status, ...((await res.json()) as Record<string, unknown>) }
    // A little after the swap, and until the clients have sent the new version enough rows for its drift series
    // (DRIFT_MIN_ROWS = 100, with the tests' 40 routed rows): a fixed time gives too few on a loaded machine.
    const swapped = Date.now()
    const fresh = () => outcomes.filter((o) => o.version === loadAnswer.version).length
    while (Date.now() - swapped < 500 || fresh() < 64) await new Promise((r) => setTimeout(r, 50))
  } finally {
    stop = true
    await Promise.all(clients)
  }
}, 120_000)

afterAll(async () => {
  await runner?.stop()
  await rm(root, { recursive: true, force: true })
})

describe('a 7th expert added to the running demo model under load', () => {
  it('loads the new version with 0 failed requests; answers came from both versions', () => {
    expect(loadAnswer).toMatchObject({ status: 200, name: MODEL, state: 'READY' })
    expect(loadAnswer.previous_version).toBe(oldVersion)
    const failed = outcomes.filter((o) => o.status !== 200)
    expect(failed).toEqual([])
    const versions = new Set(outcomes.map((o) => o.version))
    expect(versions).toEqual(new Set([oldVersion, loadAnswer.version]))
    // Answers after the swap come from the new version (the clients' last ones).
    expect(outcomes.at(-1)?.version).toBe(loadAnswer.version)
  })

  it('serves the new expert on the next request with an explicit mix', async () => {
    const meta = (await (await fetch(`${runner.url}/v2/models/${MODEL}`)).json()) as {
      parameters?: { experts?: string[] }
    }
    expect(JSON.stringify(meta)).toContain(`"${NEW}"`)
    const s = loadTaskSplit('original', 'test', { limit: 4 })
    const r = await infer(pixels(checker(s.x), s.n, { experts: { [NEW]: 1 } }))
    expect(r.status).toBe(200)
    expect(r.json.model_version).toBe(loadAnswer.version)
    const w = r.json.outputs.find((o) => o.name === 'expert_weights')?.data as number[]
    expect(w).toHaveLength(s.n * 7)
    for (let k = 0; k < s.n; k++) expect(w.slice(k * 7, k * 7 + 7)).toEqual([0, 0, 0, 0, 0, 0, 1])
  })

  it('routes the new domain’s inputs to the new expert', async () => {
    const s = loadTaskSplit('original', 'test', { limit: 40 })
    const r = await infer(pixels(checker(s.x), s.n))
    expect(r.status).toBe(200)
    const w = r.json.outputs.find((o) => o.name === 'expert_weights')?.data as number[]
    let top = 0
    for (let k = 0; k < s.n; k++) {
      const row = w.slice(k * 7, k * 7 + 7)
      if (row.indexOf(Math.max(...row)) === 6) top++
    }
    expect(top).toBeGreaterThanOrEqual(Math.ceil(s.n * 0.75))
  })

  it('the new version reports drift (the demo package predates the profile) and counts the new expert', async () => {
    const manifest = PackageManifestSchema.parse(
      JSON.parse(readFileSync(join(repo, 'fashion-v2/manifest.json'), 'utf8')),
    )
    expect(manifest.routingProfile?.meanWeight).toHaveLength(7)
    const text = await (await fetch(`${runner.url}/metrics`)).text()
    // Over 100 routed rows have reached the new version (the clients' and the test's above).
    const drift = promSample(text, 'twinserve_runner_routing_drift', { model: MODEL })
    expect(text).toMatch(/^twinserve_runner_routing_drift\{model="fashion-twin"\} /m)
    expect(drift).toBeGreaterThanOrEqual(0)
    expect(drift).toBeLessThanOrEqual(1)
    expect(
      promSample(text, 'twinserve_runner_expert_routed_rows_total', { model: MODEL, expert: NEW }),
    ).toBeGreaterThanOrEqual(30)
  })
})
