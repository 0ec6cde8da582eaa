/**
 * The builder and the runner agree: packages made by `twinserve build` (generated MLP with a transposed Gemm head,
 * a transformer block with 3-D inputs, and a compact MLP package: no shared file, float16 factors) served by a
 * runner process. Zero weights give the shared variant, a
 * materialised linear merge gives what the factored graph computes (so the factors follow the documented naming
 * and layout convention), the router's weights are a distribution over the experts, and rows the router is unsure
 * about abstain to the shared model when asked (`abstain_below`).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { writeBuildFixture } from '@twinserve/gpu-runner/test-support'
import {
  InferenceResponseSchema,
  type PackageManifest,
  RunParametersSchema,
} from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RunnerProcess, signedFetch, startRunnerProcess } from '../support/runner-harness.ts'

const SECRET = 'built-secret-0123456789abcdef'
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-built-'))
const manifests: PackageManifest[] = []
let runner: RunnerProcess

beforeAll(async () => {
  const dirs: string[] = []
  // The third package is compact: no shared variant file (the runner serves `shared` from the twin graph) and
  // float16 factors, which the materialised path must widen to rebuild the experts' deltas.
  const compact = {
    name: 'test-mlp-compact',
    shared_file: false,
    exclusive: { rank: 2, dtype: 'float16', tensors: [{ match: 'head.*', rank: 4 }] },
  }
  for (const [label, kind, recipe] of [
    ['mlp', 'mlp', undefined],
    ['block', 'block', undefined],
    ['mlp-compact', 'mlp', compact],
  ] as const) {
    const fx = await writeBuildFixture(join(root, `${label}-in`), {
      kind,
      ...(recipe ? { recipe } : {}),
    })
    const out = join(root, `${label}-pkg`)
    await buildPackage(fx.recipePath, { out, reporter: createReporter({ quiet: true }) })
    manifests.push((await loadPackage(out)).manifest)
    dirs.push(out)
  }
  runner = await startRunnerProcess({ packages: dirs, secret: SECRET })
}, 120_000)
afterAll(async () => {
  expect(await runner?.stop()).toBe(0)
  await rm(root, { recursive: true, force: true })
})

/** Two rows of deterministic inputs matching the manifest (variable non-batch dims get 5). */
function inputsFor(m: PackageManifest) {
  return m.inputs.map((t, i) => {
    const shape = t.shape.map((d, k) => (k === 0 ? 2 : d === -1 ? 5 : d))
    const n = shape.reduce((a, b) => a * b, 1)
    return {
      name: t.name,
      shape,
      datatype: t.datatype,
      data: Array.from({ length: n }, (_, j) => Math.sin(j * 0.37 + i)),
    }
  })
}

async function infer(m: PackageManifest, parameters?: Record<string, unknown>) {
  const res = await signedFetch(SECRET, runner.url, `/v2/models/${m.name}/infer`, {
    body: JSON.stringify({ inputs: inputsFor(m), ...(parameters ? { parameters } : {}) }),
  })
  const json = await res.json()
  expect(res.status, JSON.stringify(json)).toBe(200)
  return InferenceResponseSchema.parse(json)
}

function data(r: Awaited<ReturnType<typeof infer>>, name: string): number[] {
  return (r.outputs.find((o) => o.name === name)?.data ?? []) as number[]
}

function maxDiff(a: readonly number[], b: readonly number[]): number {
  expect(a).toHaveLength(b.length)
  return Math.max(...a.map((v, i) => Math.abs(v - (b[i] ?? Number.NaN))))
}

describe('runner serving packages from twinserve build', () => {
  it('serves both packages with every merge path', () => {
    expect(runner.logs.filter((l) => l.msg === 'model loaded').map((l) => l.model)).toEqual(
      manifests.map((m) => m.name),
    )
    // Both packages carry factors the materialised path can read.
    expect(runner.logs.some((l) => l.msg === 'model loaded' && l.materialized_unavailable)).toBe(
      false,
    )
  })

  for (const i of [0, 1, 2])
    it(`package ${i}: zero weights = shared variant, materialised linear = factored, router sums to 1`, async () => {
      const m = manifests[i] as PackageManifest
      const out = m.outputs[0]?.name ?? ''
      const experts = m.experts.map((e) => e.name)
      const zero = await infer(m, { experts: { [experts[0] ?? '']: 0 } })
      const shared = await infer(m, { variant: 'shared' })
      expect(maxDiff(data(zero, out), data(shared, out))).toBeLessThan(1e-5)
      // Without a shared file the twin graph serves `shared` (at zero weights); with one, the plain graph does.
      expect('variants/shared.onnx' in m.files).toBe(i !== 2)
      expect(shared.parameters).toMatchObject({ merge_path: i === 2 ? 'factored' : 'static' })

      const mix = Object.fromEntries(experts.map((e, t) => [e, [0.5, 0.3, 0.2][t] ?? 0]))
      const factored = await infer(m, { experts: mix })
      for (const method of ['task_arithmetic', 'linear']) {
        const mat = await infer(m, { experts: mix, merge_method: method })
        expect(mat.parameters).toMatchObject({ merge_path: 'materialized' })
        expect(maxDiff(data(mat, out), data(factored, out)), method).toBeLessThan(1e-4)
      }
      // One expert at weight 1 differs from the shared model (exclusive knowledge is applied).
      const one = await infer(m, { experts: { [experts[1] ?? '']: 1 } })
      expect(maxDiff(data(one, out), data(shared, out))).toBeGreaterThan(1e-4)

      const routed = await infer(m)
      const w = data(routed, 'expert_weights')
      const T = experts.length
      for (let r = 0; r < 2; r++)
        expect(w.slice(r * T, (r + 1) * T).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5)
      const top1 = data(await infer(m, { top_k: 1 }), 'expert_weights')
      for (let r = 0; r < 2; r++)
        expect(top1.slice(r * T, (r + 1) * T).filter((v) => v > 0)).toHaveLength(1)

      // The abstain threshold (issue #18): rows whose router is less sure than 1 apply no expert (the shared
      // model), and the response counts them.
      expect(routed.parameters).not.toHaveProperty('abstained_rows')
      const unsure = await infer(m, { abstain_below: 1 })
      const aw = data(unsure, 'expert_weights')
      const abstained = [0, 1].filter((r) => aw.slice(r * T, (r + 1) * T).every((v) => v === 0))
      expect(unsure.parameters).toMatchObject({ abstained_rows: abstained.length })
      expect(abstained.length).toBeGreaterThan(0)
      // The merge extension's run parameters as shared/ describes them; the runner's /metrics counts the rows.
      const { variant: _v, merge_path: _p, provider: _e, ...run } = unsure.parameters ?? {}
      expect(RunParametersSchema.parse(run)).toEqual({ abstained_rows: abstained.length })
      const metrics = await (await fetch(`${runner.url}/metrics`)).text()
      expect(metrics).toContain(
        `twinserve_runner_abstained_rows_total{model="${m.name}"} ${abstained.length}`,
      )
      const per = data(shared, out).length / 2
      for (const r of abstained)
        expect(
          maxDiff(
            data(unsure, out).slice(r * per, (r + 1) * per),
            data(shared, out).slice(r * per, (r + 1) * per),
          ),
        ).toBeLessThan(1e-5)
    })
})
