/**
 * Optional twin-graph controls (issue #18's abstain threshold, `abstain_below`): a package built now has the
 * control and honours it (the committed demo package, zoo/fashion/package, rebuilt for issue #18's defaults,
 * included); a package built before it (the hand-built fixture) still loads and serves, and a request that sets
 * the control gets a 400 naming the package and the control.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { AppError, type InferenceRequest, type ResponseOutput } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { writeBuildFixture } from '../../test-support/test-models.ts'
import { buildPackage } from '../build/build-package.ts'
import { createReporter } from '../build/pipeline/progress.ts'
import { loadModel } from './load-model.ts'
import type { ServedModel } from './served-model.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-controls-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const DEMO_PACKAGE = join(import.meta.dirname, '../../../zoo/fashion/package')
const cacheOpts = { maxEntries: 2, maxBytes: 1 << 20 }

let built: ServedModel
beforeAll(async () => {
  // The recipe's default threshold: 1, so every row the router is not fully sure about abstains by default.
  const fx = await writeBuildFixture(join(root, 'fx'), {
    recipe: {
      variants: [],
      router: { data: 'routing.jsonl', hidden: [16], epochs: 20, seed: 1, abstain_below: 1 },
    },
  })
  await buildPackage(fx.recipePath, {
    out: join(root, 'pkg'),
    reporter: createReporter({ quiet: true }),
  })
  built = await loadModel(join(root, 'pkg'), { provider: 'cpu', mergeCache: cacheOpts })
})

function request(
  input: { name: string; width: number },
  rows: number,
  parameters?: InferenceRequest['parameters'],
): InferenceRequest {
  const data = Array.from({ length: rows * input.width }, (_, i) => Math.sin(i * 0.37) * 2)
  return {
    inputs: [{ name: input.name, shape: [rows, input.width], datatype: 'FP32', data }],
    ...(parameters ? { parameters } : {}),
  }
}

async function runWithParameters(m: ServedModel, req: InferenceRequest) {
  const [out] = await m.run([m.prepare(req)])
  if (!out) throw new Error('no result')
  return out
}

async function run(m: ServedModel, req: InferenceRequest): Promise<ResponseOutput[]> {
  return (await runWithParameters(m, req)).outputs
}

const data = (outs: readonly ResponseOutput[], name: string) =>
  outs.find((o) => o.name === name)?.data as number[]

function refusal(f: () => unknown): AppError {
  try {
    f()
  } catch (err) {
    if (err instanceof AppError) return err
    throw err
  }
  throw new Error('expected an AppError')
}

describe('a package built with abstain_below', () => {
  const x = { name: 'x', width: 8 }

  it('never abstains at 0; rows less sure than the threshold get weights 0 and the shared model', async () => {
    const B = 8
    const routed = await run(built, request(x, B, { abstain_below: 0 }))
    const shared = await run(built, request(x, B, { variant: 'shared' }))
    const weights = data(routed, 'expert_weights')
    const sure = Array.from({ length: B }, (_, b) => Math.max(...weights.slice(b * 3, b * 3 + 3)))
    const threshold = [...sure].sort((a, b) => a - b)[B / 2] as number
    const result = await runWithParameters(built, request(x, B, { abstain_below: threshold }))
    const out = result.outputs
    expect(result.parameters).toEqual({ abstained_rows: B / 2 })
    let abstained = 0
    for (let b = 0; b < B; b++) {
      const w = data(out, 'expert_weights').slice(b * 3, b * 3 + 3)
      const y = data(out, 'logits').slice(b * 4, b * 4 + 4)
      if ((sure[b] as number) < threshold) {
        abstained++
        expect(w).toEqual([0, 0, 0])
        expect(y).toEqual(data(shared, 'logits').slice(b * 4, b * 4 + 4))
        // The check has teeth: routed, the row is not the shared model.
        expect(data(routed, 'logits').slice(b * 4, b * 4 + 4)).not.toEqual(y)
      } else {
        expect(w).toEqual(weights.slice(b * 3, b * 3 + 3))
        expect(y).toEqual(data(routed, 'logits').slice(b * 4, b * 4 + 4))
      }
    }
    expect(abstained).toBe(B / 2)
  })

  it('takes the recipe’s default threshold when a request sets none, and reports it in the metadata', async () => {
    expect(built.manifest.router.abstainBelow).toBe(1)
    expect(built.metadata().parameters).toMatchObject({ abstain_below: 1 })
    const B = 8
    const byDefault = await runWithParameters(built, request(x, B))
    const w = data(byDefault.outputs, 'expert_weights')
    const zeroRows = Array.from({ length: B }, (_, b) => b).filter((b) =>
      w.slice(b * 3, b * 3 + 3).every((v) => v === 0),
    )
    expect(zeroRows.length).toBeGreaterThan(0)
    expect(byDefault.parameters).toEqual({ abstained_rows: zeroRows.length })
    // Explicit mixes and variants never abstain, and say nothing about it.
    const mix = await runWithParameters(built, request(x, 2, { experts: { 'task-a': 1 } }))
    expect(mix.parameters).toEqual({})
  })
})

describe('the committed demo package, rebuilt with the control (issue #18)', () => {
  it('never abstains by default; a request that sets abstain_below gets the shared model on unsure rows', async () => {
    const demo = await loadModel(DEMO_PACKAGE, { provider: 'cpu', mergeCache: cacheOpts })
    expect(demo.manifest.router.abstainBelow).toBeUndefined()
    // Pixel-like values in [0, 0.6]: the router is unsure about these rows (max weights 0.83–0.98 when written).
    const B = 4
    const pixels = (parameters?: InferenceRequest['parameters']): InferenceRequest => ({
      inputs: [
        {
          name: 'pixels',
          shape: [B, 784],
          datatype: 'FP32',
          data: Array.from({ length: B * 784 }, (_, i) => Math.sin(i * 0.37) * 0.3 + 0.3),
        },
      ],
      ...(parameters ? { parameters } : {}),
    })
    const routed = await runWithParameters(demo, pixels())
    expect(routed.parameters).toEqual({})
    const w = data(routed.outputs, 'expert_weights') // [B, 6]
    const sure = Array.from({ length: B }, (_, b) => Math.max(...w.slice(b * 6, b * 6 + 6)))
    const threshold = [...sure].sort((a, b) => a - b)[B / 2] as number
    const shared = await run(demo, pixels({ variant: 'shared' }))
    const result = await runWithParameters(demo, pixels({ abstain_below: threshold }))
    expect(result.parameters).toEqual({ abstained_rows: B / 2 })
    for (let b = 0; b < B; b++) {
      const y = data(result.outputs, 'logits').slice(b * 10, b * 10 + 10)
      if ((sure[b] as number) < threshold) {
        expect(data(result.outputs, 'expert_weights').slice(b * 6, b * 6 + 6)).toEqual(
          Array(6).fill(0),
        )
        expect(y).toEqual(data(shared, 'logits').slice(b * 10, b * 10 + 10))
      } else expect(y).toEqual(data(routed.outputs, 'logits').slice(b * 10, b * 10 + 10))
    }
    // top_k still applies: two experts per row at most.
    const top2 = data(await run(demo, pixels({ top_k: 2 })), 'expert_weights')
    expect(top2.filter((v) => v === 0).length).toBeGreaterThanOrEqual(B * 4)
  })
})

describe('packages built before an optional control', () => {
  it('a hand-built package without the control loads, serves, and refuses abstain_below with a 400 naming it', async () => {
    await writeTwinFixture(join(root, 'fixture'))
    const m = await loadModel(join(root, 'fixture'), { provider: 'cpu', mergeCache: cacheOpts })
    expect((await run(m, request({ name: 'x', width: 6 }, 2))).length).toBeGreaterThan(0)
    const err = refusal(() => m.prepare(request({ name: 'x', width: 6 }, 1, { abstain_below: 0 })))
    expect(err.code).toBe('INVALID_REQUEST')
    expect(err.status).toBe(400)
    expect(err.message).toMatch(/model '[^']+' does not support parameters\.abstain_below/)
    expect(err.message).toMatch(/no 'abstain_below' input/)
  })
})
