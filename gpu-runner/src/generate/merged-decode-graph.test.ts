/**
 * The merged decode graph (issue 14, speed) on the LM zoo's twin package, real onnxruntime: every correction merges
 * into its matrix (the tied embedding's lookup and LM head into one); fed one mix's merged matrices, its logits and
 * new keys and values match the factored decode graph's to float32 rounding at prefill and at a decode step on
 * validation prompts, for one-hot, dense and zero mixes; the engine decodes the same greedy tokens merged as
 * factored, runs a pass merged only when every row applies one mix, merges a mix once while it is kept, and skips
 * the merge for a batch too short to repay it; the runner opens it and says so; on the builder's other twin graphs
 * it merges what matches, never fails, and agrees.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  LM_TEST_ENGINE,
  LM_TEST_MIXES,
  LM_ZOO,
  lmMergedDecode,
  lmPassFeeds,
  tensorMaxAbsDiff,
} from '../../test-support/lm-zoo.ts'
import { writeBuildFixture } from '../../test-support/test-models.ts'
import { buildPackage } from '../build/build-package.ts'
import { modelInputs, syntheticFeeds } from '../build/import/model-io.ts'
import { readOnnx } from '../build/import/read-onnx.ts'
import { createReporter } from '../build/pipeline/progress.ts'
import { loadModel } from '../model/load-model.ts'
import { onnx } from '../onnx/proto.ts'
import { loadPackage, readManifest } from '../package/load-package.ts'
import { openSession, type ort } from '../runtime/ort-session.ts'
import { estimateLoadedBytes, MEMORY_PER_SESSION_BYTES } from '../server/package-location.ts'
import { encodeControls, type RowControls } from '../twin-contract/encode-controls.ts'
import { DecoderGraph } from './decoder-graph.ts'
import { GenerationEngine, type GenerationEvent } from './engine.ts'
import { MERGE_MIX, mergedDecodeGraph } from './merged-decode-graph.ts'
import { BAKED_MIXES, MERGED_MIXES_KEPT, type MergedDecoder, MergedMixes } from './merged-mixes.ts'

/**
 * Logits, merged against factored (both float32: x·(W + ΔW) against x·W + (x·U ⊙ s)·F, summed in another order).
 * Measured 1.34e-5 at most on zoo/lm (logits up to 16.7), the size of the decode graph's own agreement with the
 * graph as served (decode-graph.test.ts: 1.14e-5, tolerance 2e-5).
 */
const LOGIT_TOLERANCE = 2e-5
const KV_TOLERANCE = 1e-5
const opts = { provider: 'cpu' as const, threads: 1 }

let loaded: ReturnType<typeof lmMergedDecode> | undefined
const setup = () => {
  loaded ??= lmMergedDecode()
  return loaded
}

describe('merged decode graph (#14)', () => {
  it('merges all 21 corrections into 20 matrices (the tied lookup and LM head share one) and drops the factors', async () => {
    const { merged } = await setup()
    if (!('decode' in merged)) throw new Error('no rewrite')
    expect(merged.sites).toBe(21)
    expect(merged.factored).toBe(0)
    expect(merged.explicit).toBe(true)
    expect(merged.matrices.length).toBe(20)
    // 2,048 × 128 + 256 × 128 + 3 blocks × (4 × 128² + 2 × 128 × 384) float32s.
    expect(merged.bytesPerMix).toBe(
      4 * (2048 * 128 + 256 * 128 + 3 * (4 * 128 * 128 + 2 * 128 * 384)),
    )
    const graph = onnx.ModelProto.decode(merged.decode).graph
    // No float16 factor is left in the decode graph, and it takes each merged matrix as an input.
    expect((graph?.initializer ?? []).filter((t) => t.dataType === 10)).toEqual([])
    const inputs = (graph?.input ?? []).map((i) => i.name)
    for (const m of merged.matrices) expect(inputs).toContain(m.name)
    const mergeGraph = onnx.ModelProto.decode(merged.merge).graph
    expect((mergeGraph?.output ?? []).map((o) => o.name)).toEqual(
      merged.matrices.map((m) => m.name),
    )
    expect((mergeGraph?.input ?? []).map((i) => i.name)).toEqual([MERGE_MIX])
  })

  it('fed one mix’s matrices, matches the factored decode graph at prefill and at a decode step, every mix', async () => {
    const { T, factored, decoder, controls, prompts } = await setup()
    const mixes = new MergedMixes(decoder, T)
    let worstLogit = 0
    let worstKv = 0
    let moved = 0
    const prefills: (ort.Tensor | undefined)[] = []
    for (const mix of LM_TEST_MIXES) {
      const { matrices } = await mixes.merge(mix)
      const rows: RowControls[] = [{ mixWeights: mix }, { mixWeights: mix }]
      for (const ids of prompts) {
        const S = ids.length
        const step = async (input: number[], past: number, pastKv?: Record<string, ort.Tensor>) => {
          const feeds = lmPassFeeds(rows, input, past, controls, pastKv)
          const a = await factored.run(feeds)
          const b = await decoder.decode.run({ ...feeds, ...matrices })
          worstLogit = Math.max(worstLogit, tensorMaxAbsDiff(a.logits, b.logits))
          for (const name of factored.outputNames.filter((o) => o.startsWith('present')))
            worstKv = Math.max(worstKv, tensorMaxAbsDiff(a[name], b[name]))
          // The rows' explicit mix is what they apply: the merged graph reads it directly, with no router.
          expect(b.expert_weights).toBeUndefined()
          expect(a.expert_weights?.data).toEqual(Float32Array.from(rows.flatMap(() => mix)))
          return a
        }
        const prefill = await step(ids, 0)
        await step([ids[S - 1] ?? 0], S, prefill)
        prefills.push(prefill.logits)
      }
    }
    // The check has teeth: a mix moves the logits far more than the tolerance (one-hot and dense against zero).
    const n = prompts.length
    for (let i = 0; i < n; i++)
      for (const m of [0, 1])
        moved = Math.max(moved, tensorMaxAbsDiff(prefills[m * n + i], prefills[2 * n + i]))
    expect(moved).toBeGreaterThan(1)
    expect(worstLogit).toBeLessThan(LOGIT_TOLERANCE)
    expect(worstKv).toBeLessThan(KV_TOLERANCE)
  }, 60_000)

  it('the engine decodes the same greedy tokens merged as factored; merged passes only where every row has one mix', async () => {
    const { T, factored, decoder, controls, prompts } = await setup()
    const run = async (merge: boolean, pinned: boolean) => {
      const graph = new DecoderGraph(factored, controls, T, undefined, false, decoder)
      const engine = new GenerationEngine(graph, {
        ...LM_TEST_ENGINE,
        merge: merge ? { minSteps: 4 } : false,
      })
      const tokens = await Promise.all(
        prompts.map(async (ids, i) => {
          const got: number[] = []
          for await (const e of engine.submit({
            promptIds: ids,
            maxTokens: 12,
            sampling: { temperature: 0, topP: 1, topK: 0 },
            controls: { mixWeights: LM_TEST_MIXES[pinned ? 1 : i % LM_TEST_MIXES.length] ?? [] },
          }) as AsyncIterable<GenerationEvent>)
            if (e.type === 'token') got.push(e.id)
          return got
        }),
      )
      return { tokens, counters: { ...engine.counters } }
    }
    for (const pinned of [true, false]) {
      const before = await run(false, pinned)
      expect(before.tokens.every((t) => t.length === 12)).toBe(true)
      expect(before.counters.mergedPasses).toBe(0)
      const after = await run(true, pinned)
      expect(after.tokens).toEqual(before.tokens)
      if (pinned) {
        // One mix for every sequence: one merge, and every decode pass merged.
        expect(after.counters.merges).toBe(1)
        expect(after.counters.mergedPasses).toBe(after.counters.decodePasses)
      } else {
        // Three mixes side by side: the passes that hold more than one run factored.
        expect(after.counters.mergedPasses).toBeLessThan(after.counters.decodePasses)
      }
    }
  }, 60_000)

  it('a lone sequence is merged once its steps repay it, and a kept mix is not merged again', async () => {
    const { T, factored, decoder, controls, prompts } = await setup()
    const graph = new DecoderGraph(factored, controls, T, undefined, false, decoder)
    const engine = new GenerationEngine(graph, {
      ...LM_TEST_ENGINE,
      merge: { minSteps: 8, maxMixes: 2 },
    })
    const generate = async (maxTokens: number, mix: number[]) => {
      for await (const _ of engine.submit({
        promptIds: prompts[0] ?? [],
        maxTokens,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        controls: { mixWeights: mix },
      }))
        void _
    }
    // 6 tokens: 5 decode steps, fewer than minSteps: factored.
    await generate(6, [1, 0, 0, 0, 0])
    expect(engine.counters).toMatchObject({ merges: 0, mergedPasses: 0 })
    // 12 tokens: merged at the first decode step (11 left), every decode step then merged.
    await generate(12, [1, 0, 0, 0, 0])
    expect(engine.counters).toMatchObject({ merges: 1, mergedPasses: 11 })
    // Kept: even a short sequence of that mix now decodes merged, with no new merge.
    await generate(3, [1, 0, 0, 0, 0])
    expect(engine.counters).toMatchObject({ merges: 1, mergedPasses: 13 })
    // Two more mixes: the first is dropped (maxMixes 2) and must be merged again.
    await generate(12, [0, 1, 0, 0, 0])
    await generate(12, [0, 0, 1, 0, 0])
    await generate(12, [1, 0, 0, 0, 0])
    expect(engine.counters.merges).toBe(4)
  }, 60_000)

  it('a merge that fails costs nothing but speed: the engine decodes factored, the same tokens', async () => {
    const { T, factored, decoder, controls, prompts } = await setup()
    const tokens = async (merged: MergedDecoder | undefined) => {
      const graph = new DecoderGraph(factored, controls, T, undefined, false, merged)
      const engine = new GenerationEngine(graph, { ...LM_TEST_ENGINE, merge: { minSteps: 4 } })
      const got: number[] = []
      for await (const e of engine.submit({
        promptIds: prompts[0] ?? [],
        maxTokens: 12,
        sampling: { temperature: 0, topP: 1, topK: 0 },
        controls: { mixWeights: LM_TEST_MIXES[1] ?? [] },
      }))
        if (e.type === 'token') got.push(e.id)
      return { got, counters: engine.counters }
    }
    // The merge "session" is the decoder itself: onnxruntime refuses the merge's feeds.
    const broken = await tokens({ ...decoder, merge: factored })
    expect(broken.counters).toMatchObject({ merges: 1, mergeFailures: 1, mergedPasses: 0 })
    expect(broken.got).toEqual((await tokens(undefined)).got)
  }, 60_000)

  it('the runner opens it beside the decode graph and says so', async () => {
    const model = await loadModel(join(LM_ZOO, 'package'), {
      provider: 'cpu',
      threads: 1,
      sessionThreads: false,
      mergeCache: { maxEntries: 1, maxBytes: 1 << 20 },
    })
    try {
      expect(model.mergedDecode).toBe(
        '21 corrections merged into 20 matrices; 3.0 MiB a mix; up to 1 hot mix baked into a session of its own',
      )
      expect(model.twinGraph.merged?.matrices.length).toBe(20)
      // The merge session holds each expert's whole correction and the base matrices: (T + 1) × 3 MiB.
      expect(model.mergedSessionBytes).toBe(6 * 3 * 2 ** 20)
    } finally {
      await model.close()
    }
    // The memory check counts the two sessions, the merge session's (T + 1) matrices (four times: folded at load beside
    // their factors), the kept mixes' (twice: in shared memory and in the decode session's thread) and the baked
    // sessions (a session and five times the matrices each: baked-mix-graph.test.ts).
    const manifest = await readManifest(join(LM_ZOO, 'package'))
    const withMerged = await estimateLoadedBytes(join(LM_ZOO, 'package'), manifest)
    const without = await estimateLoadedBytes(join(LM_ZOO, 'package'), manifest, {
      mergedSessions: false,
    })
    expect(withMerged - without).toBe(
      (2 + BAKED_MIXES) * MEMORY_PER_SESSION_BYTES +
        (4 * (5 + 1) + 2 * MERGED_MIXES_KEPT + 5 * BAKED_MIXES) * 3 * 2 ** 20,
    )
    // --baked-mixes 0: no baked session to count.
    const unbaked = await estimateLoadedBytes(join(LM_ZOO, 'package'), manifest, { bakedMixes: 0 })
    expect(withMerged - unbaked).toBe(BAKED_MIXES * (MEMORY_PER_SESSION_BYTES + 5 * 3 * 2 ** 20))
    const lean = await loadModel(join(LM_ZOO, 'package'), {
      provider: 'cpu',
      threads: 1,
      sessionThreads: false,
      mergedSessions: () => false,
      mergeCache: { maxEntries: 1, maxBytes: 1 << 20 },
    })
    try {
      expect(lean.twinGraph.merged).toBeUndefined()
      expect(lean.mergedSessionBytes).toBe(0)
    } finally {
      await lean.close()
    }
  }, 60_000)
})

const root = await mkdtemp(join(tmpdir(), 'twinserve-merged-decode-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe.each([
  ['float32', { rank: 4, dtype: 'float32' }, true],
  ['int8, ragged ranks from a budget', { budget: 0.3, dtype: 'int8' }, false],
  ['top-2 gather', { rank: 4, dtype: 'float16', topk_gather: 2 }, false],
  ['shared basis', { shared_basis: { rank: 6 }, dtype: 'float16' }, false],
] as const)(
  'merged decode graph on the generated transformer block, %s',
  (label, exclusive, merges) => {
    it('merges what it can, never fails, and agrees with the twin graph for one mix', async () => {
      const T = 4
      const dir = join(root, label.replaceAll(/[^a-z0-9]+/g, '-'))
      const fx = await writeBuildFixture(dir, {
        kind: 'block',
        experts: T,
        recipe: { exclusive, variants: [], verify: { examples_per_expert: 1 } },
      })
      await buildPackage(fx.recipePath, {
        out: join(dir, 'package'),
        reporter: createReporter({ quiet: true }),
      })
      const pkg = await loadPackage(join(dir, 'package'))
      const rewritten = mergedDecodeGraph(pkg.model, T)
      expect('decode' in rewritten).toBe(merges)
      if (!('decode' in rewritten)) return
      const twin = (await openSession(pkg.model, opts)).session
      const decoder: MergedDecoder = {
        decode: (await openSession(rewritten.decode, opts)).session,
        merge: (await openSession(rewritten.merge, opts)).session,
        matrices: rewritten.matrices,
      }
      const x = syntheticFeeds(modelInputs((await readOnnx(fx.base)).graph), 3, 5)
      for (const mix of [
        [0, 0.7, 0, 0.3],
        [0, 0, 1, 0],
      ]) {
        const rows = [{ mixWeights: mix }, { mixWeights: mix }, { mixWeights: mix }]
        const feeds = { ...x, ...encodeControls(rows, T) }
        const a = await twin.run(feeds)
        const b = await decoder.decode.run({
          ...feeds,
          ...(await new MergedMixes(decoder, T).merge(mix)).matrices,
        })
        const zero = await twin.run({
          ...x,
          ...encodeControls(
            rows.map(() => ({})),
            T,
          ),
        })
        expect(tensorMaxAbsDiff(a.logits, zero.logits)).toBeGreaterThan(1e-2)
        expect(tensorMaxAbsDiff(a.logits, b.logits)).toBeLessThan(1e-5)
      }
    }, 60_000)
  },
)
