/**
 * A mix baked into the decoder (issue 14, speed) on the LM zoo's twin package, real onnxruntime: the baked graph
 * takes only the plain decoder's inputs and computes what the merged decode graph fed the mix's matrices computes,
 * for one-hot, dense and zero mixes, at prefill and at a decode step; the engine bakes a pinned mix once it is hot,
 * runs its passes baked with the same greedy tokens, refuses a baked session whose first pass disagrees, closes a
 * baked session when its mix is dropped, keeps a hot one through one-off mixes, bakes only a mix that dominates
 * the recent passes and hands the session to the next that does; in the runner, with sessions in threads of their own, a pinned mix decodes baked and the model's close
 * closes what was baked (the memory check's count of it: merged-decode-graph.test.ts).
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  LM_TEST_ENGINE,
  LM_TEST_MIXES,
  LM_ZOO,
  lmMergedDecode,
  lmPassFeeds,
  tensorMaxAbsDiff,
} from '../../test-support/lm-zoo.ts'
import { loadModel } from '../model/load-model.ts'
import { onnx } from '../onnx/proto.ts'
import { openSession, type ort } from '../runtime/ort-session.ts'
import type { RunnableSession } from '../runtime/threaded-session.ts'
import { bakedMixGraph } from './baked-mix-graph.ts'
import { DecoderGraph } from './decoder-graph.ts'
import { type EngineOptions, GenerationEngine } from './engine.ts'
import { LmProfile } from './lm-profile.ts'
import { MERGE_MIX } from './merged-decode-graph.ts'
import {
  type BakedSession,
  type MergedDecoder,
  type MergedMix,
  MergedMixes,
} from './merged-mixes.ts'
import { TextGenerator } from './text-generator.ts'

/**
 * Baked against fed (the same products; onnxruntime prepacks the baked matrices and folds the vector deltas, which
 * sums in another order): measured 9.5e-6 at most on zoo/lm's logits (up to ~20) in a scratch probe.
 */
const LOGIT_TOLERANCE = 2e-5
const KV_TOLERANCE = 1e-5
const opts = { provider: 'cpu' as const, threads: 1 }

let loaded: ReturnType<typeof lmMergedDecode> | undefined
const setup = () => {
  loaded ??= lmMergedDecode()
  return loaded
}

const valuesOf = (matrices: Record<string, ort.Tensor>): Record<string, Float32Array> =>
  Object.fromEntries(Object.entries(matrices).map(([k, t]) => [k, t.data as Float32Array]))

/** Resolves once `m`'s bake has opened (its candidate session is there), failing after 2 s. */
async function candidateOf(m: MergedMix): Promise<void> {
  for (let i = 0; i < 200 && !m.candidate; i++) await new Promise((r) => setTimeout(r, 10))
  expect(m.candidate).toBeDefined()
}

/**
 * A bake that opens the baked graph in-process and records what it opened and closed; `failAfter` runs of a baked
 * session make the next ones throw.
 */
function recordingBake(bytes: Uint8Array, wrongMix?: Float32Array, failAfter = Infinity) {
  const log = { opened: 0, released: 0, runs: 0, mixes: [] as number[][] }
  const bake = async (mix: Float32Array, values: Record<string, Float32Array>) => {
    log.opened++
    log.mixes.push(Array.from(mix))
    const session = (await openSession(bakedMixGraph(bytes, values, wrongMix ?? mix), opts)).session
    const counted: RunnableSession = {
      inputNames: session.inputNames,
      outputNames: session.outputNames,
      inputMetadata: session.inputMetadata,
      outputMetadata: session.outputMetadata,
      run: async (feeds: Record<string, ort.Tensor>, fetches?: readonly string[]) => {
        log.runs++
        if (log.runs > failAfter) throw new Error('the baked session crashed')
        return session.run(feeds, fetches ?? session.outputNames)
      },
      release: () => session.release(),
    }
    return {
      session: counted,
      release: () => {
        log.released++
        return session.release()
      },
    } satisfies BakedSession
  }
  return { bake, log }
}

/** Greedy tokens of `prompts`, all under one mix, from an engine over `decoder`. */
async function pinnedTokens(
  decoder: MergedDecoder | undefined,
  merge: EngineOptions['merge'],
  mix: number[],
  maxTokens = 12,
) {
  const { T, factored, controls, prompts } = await setup()
  const graph = new DecoderGraph(factored, controls, T, undefined, false, decoder)
  const engine = new GenerationEngine(graph, { ...LM_TEST_ENGINE, merge })
  // Three waves, one after another: the later ones find the mix kept (and baked, once it is hot).
  const tokens: number[][] = []
  for (const wave of [prompts.slice(0, 4), prompts.slice(4, 7), prompts.slice(7)])
    tokens.push(
      ...(await Promise.all(
        wave.map(async (ids) => {
          const got: number[] = []
          for await (const e of engine.submit({
            promptIds: ids,
            maxTokens,
            sampling: { temperature: 0, topP: 1, topK: 0 },
            controls: { mixWeights: mix },
          }))
            if (e.type === 'token') got.push(e.id)
          return got
        }),
      )),
    )
  return { tokens, counters: { ...engine.counters }, engine }
}

describe('baked mix graph (#14)', () => {
  it('takes only the plain decoder’s inputs and computes what the merged graph fed the matrices does, every mix', async () => {
    const { T, merged, decoder, controls, prompts } = await setup()
    const mixes = new MergedMixes(decoder, T)
    let worstLogit = 0
    let worstKv = 0
    const logits: (ort.Tensor | undefined)[] = []
    for (const mix of LM_TEST_MIXES) {
      const { matrices } = await mixes.merge(mix)
      const bytes = bakedMixGraph(merged.decode, valuesOf(matrices), Float32Array.from(mix))
      const inputs = (onnx.ModelProto.decode(bytes).graph?.input ?? []).map((i) => i.name)
      // No merged matrix, no mix, no router control: the plain decoder's feeds alone.
      expect(inputs.sort()).toEqual(
        [
          'attention_mask',
          'input_ids',
          'position_ids',
          ...[0, 1, 2].flatMap((l) => [`past_key_values.${l}.key`, `past_key_values.${l}.value`]),
        ].sort(),
      )
      const baked = (await openSession(bytes, opts)).session
      try {
        const rows = [{ mixWeights: mix }, { mixWeights: mix }, { mixWeights: mix }]
        for (const ids of prompts.slice(0, 4)) {
          const step = async (
            input: number[],
            past: number,
            pastKv?: Record<string, ort.Tensor>,
          ) => {
            const feeds = lmPassFeeds(rows, input, past, controls, pastKv)
            const a = await decoder.decode.run({ ...feeds, ...matrices })
            const plain = Object.fromEntries(
              Object.entries(feeds).filter(([k]) => baked.inputNames.includes(k)),
            )
            const b = await baked.run(plain)
            worstLogit = Math.max(worstLogit, tensorMaxAbsDiff(a.logits, b.logits))
            for (const name of baked.outputNames.filter((o) => o.startsWith('present')))
              worstKv = Math.max(worstKv, tensorMaxAbsDiff(a[name], b[name]))
            return b
          }
          const prefill = await step(ids, 0)
          logits.push(prefill.logits)
          await step([ids[ids.length - 1] ?? 0], ids.length, prefill)
        }
      } finally {
        await baked.release()
      }
    }
    // The check has teeth: the baked mixes move the logits far more than the tolerance (one-hot against zero).
    expect(tensorMaxAbsDiff(logits[0], logits[8])).toBeGreaterThan(1)
    expect(worstLogit).toBeLessThan(LOGIT_TOLERANCE)
    expect(worstKv).toBeLessThan(KV_TOLERANCE)
  }, 60_000)

  it('refuses matrices the graph does not take, and a graph without the mix input', async () => {
    const { merged } = await setup()
    const mix = new Float32Array(5)
    const first = merged.matrices[0]
    if (!first) throw new Error('no matrix')
    const size = first.dims[0] * first.dims[1]
    expect(() => bakedMixGraph(merged.decode, { nope: new Float32Array(4) }, mix)).toThrow(
      'nope is not a matrix input',
    )
    expect(() =>
      bakedMixGraph(merged.decode, { [first.name]: new Float32Array(size - 1) }, mix),
    ).toThrow(`${first.name} has ${size - 1} values`)
    const once = bakedMixGraph(merged.decode, {}, mix)
    expect(() => bakedMixGraph(once, {}, mix)).toThrow(`no ${MERGE_MIX} input`)
  })

  it('the engine bakes a hot pinned mix, then decodes it baked: the same tokens as factored', async () => {
    const { merged, decoder } = await setup()
    const mix = LM_TEST_MIXES[1] ?? []
    const factored = await pinnedTokens(undefined, false, mix)
    const { bake, log } = recordingBake(merged.decode)
    const baked = await pinnedTokens({ ...decoder, bake }, { minSteps: 4, bakeWindow: 10 }, mix)
    expect(baked.tokens).toEqual(factored.tokens)
    expect(log).toMatchObject({ opened: 1, mixes: [Array.from(Float32Array.from(mix))] })
    // The first wave's passes bake it (11 merged passes, baked after 5); the later waves' run baked.
    expect(baked.counters.merges).toBe(1)
    expect(baked.counters.bakedPasses).toBeGreaterThan(10)
    expect(baked.counters.bakedPasses).toBeLessThan(baked.counters.mergedPasses)
    // The later waves' prompts are prefilled on the kept mix too.
    expect(baked.counters.mergedPrefills).toBe(6)
    // Each baked pass ran on the baked session, and so did the check of its first pass and the prefills that found
    // it baked: the third wave's at least, the second's too when the bake opened and was checked in the first.
    const bakedPrefills = log.runs - baked.counters.bakedPasses - 1
    expect([3, 6]).toContain(bakedPrefills)
    expect(baked.counters.mergedPasses).toBe(baked.counters.decodePasses)
    // No baking without a bake, or with maxBaked 0.
    const none = await pinnedTokens(
      { ...decoder, bake },
      { minSteps: 4, bakeWindow: 10, maxBaked: 0 },
      mix,
    )
    expect(none.tokens).toEqual(factored.tokens)
    expect(none.counters.bakedPasses).toBe(0)
    expect(log.opened).toBe(1)
  }, 60_000)

  it('a baked session whose first pass disagrees, or that fails, is closed: the same tokens', async () => {
    const { merged, decoder } = await setup()
    const mix = LM_TEST_MIXES[0] ?? []
    const factored = await pinnedTokens(undefined, false, mix)
    // The bake folds another mix than the one asked for: its logits differ from the merged pass's.
    const { bake, log } = recordingBake(merged.decode, Float32Array.from(LM_TEST_MIXES[1] ?? []))
    const wrong = await pinnedTokens({ ...decoder, bake }, { minSteps: 4, bakeWindow: 10 }, mix)
    expect(wrong.tokens).toEqual(factored.tokens)
    expect(wrong.counters.bakedPasses).toBe(0)
    expect(log).toMatchObject({ opened: 1, released: 1 })
    // And a bake that cannot open costs nothing either.
    const failing = async (): Promise<BakedSession> => {
      throw new Error('no session today')
    }
    const broken = await pinnedTokens(
      { ...decoder, bake: failing },
      { minSteps: 4, bakeWindow: 10 },
      mix,
    )
    expect(broken.tokens).toEqual(factored.tokens)
    expect(broken.counters.bakedPasses).toBe(0)
    // And a baked session that fails a run after its check: closed, and that pass runs merged.
    const crashing = recordingBake(merged.decode, undefined, 3)
    const crashed = await pinnedTokens(
      { ...decoder, bake: crashing.bake },
      { minSteps: 4, bakeWindow: 10 },
      mix,
    )
    expect(crashed.tokens).toEqual(factored.tokens)
    expect(crashing.log).toMatchObject({ opened: 1, released: 1, runs: 4 })
    // Its check (run 1) and two baked passes ran on it; the pass of run 4 was served merged.
    expect(crashed.counters.bakedPasses).toBe(2)
  }, 60_000)

  it('closes a baked session when its mix is dropped, and at close', async () => {
    const { T, merged, decoder } = await setup()
    const { bake, log } = recordingBake(merged.decode)
    const mixes = new MergedMixes({ ...decoder, bake }, T, { maxMixes: 1, bakeWindow: 2 })
    const a = await mixes.merge(LM_TEST_MIXES[0] ?? [])
    mixes.ran(a)
    await candidateOf(a)
    mixes.verified(a, true)
    expect(a.baked).toBeDefined()
    // A second mix with maxMixes 1 drops the first: its baked session closes.
    const b = await mixes.merge(LM_TEST_MIXES[1] ?? [])
    expect(log).toMatchObject({ opened: 1, released: 1 })
    expect(a.baked).toBeUndefined()
    mixes.ran(b)
    await candidateOf(b)
    expect(log.opened).toBe(2)
    mixes.close()
    expect(log.released).toBe(2)
  }, 60_000)

  it('keeps a baked mix through a run of one-off mixes: the least recently used unbaked one goes instead', async () => {
    const { T, merged, decoder } = await setup()
    const { bake, log } = recordingBake(merged.decode)
    const mixes = new MergedMixes({ ...decoder, bake }, T, { maxMixes: 2, bakeWindow: 2 })
    const hot = await mixes.merge(LM_TEST_MIXES[0] ?? [])
    mixes.ran(hot)
    await candidateOf(hot)
    mixes.verified(hot, true)
    const oneOff = [
      [0, 1, 0, 0, 0],
      [0, 0, 0, 1, 0],
      [0, 0, 0, 0, 1],
    ]
    for (const mix of oneOff) await mixes.merge(mix)
    // The hot mix is the least recently used, yet kept and still baked; of the one-off mixes only the last is kept.
    expect(mixes.get(LM_TEST_MIXES[0] ?? [])?.baked).toBeDefined()
    expect(oneOff.map((m) => mixes.get(m) !== undefined)).toEqual([false, false, true])
    expect(log).toMatchObject({ opened: 1, released: 0 })
    mixes.close()
    expect(log.released).toBe(1)
  }, 60_000)

  it('bakes only a mix that dominates the recent passes, and hands the session to one that comes to dominate', async () => {
    const { T, merged, decoder } = await setup()
    const { bake, log } = recordingBake(merged.decode)
    // maxBaked 1: a mix needs half of the last 6 merged passes.
    const mixes = new MergedMixes({ ...decoder, bake }, T, { bakeWindow: 6 })
    const baked = async (m: MergedMix) => {
      await candidateOf(m)
      mixes.verified(m, true)
      expect(m.baked).toBeDefined()
    }
    const a = await mixes.merge(LM_TEST_MIXES[0] ?? [])
    const b = await mixes.merge(LM_TEST_MIXES[1] ?? [])
    const c = await mixes.merge(LM_TEST_MIXES[2] ?? [])
    // Three mixes taking turns: none has half of the passes, none is baked.
    for (let i = 0; i < 4; i++) for (const m of [a, b, c]) mixes.ran(m)
    expect(log.opened).toBe(0)
    // A alone for three passes: half of the last six.
    for (let i = 0; i < 3; i++) mixes.ran(a)
    expect(log.opened).toBe(1)
    await baked(a)
    // B as often as A: both have half, A keeps the one session.
    for (let i = 0; i < 3; i++) {
      mixes.ran(b)
      mixes.ran(a)
    }
    expect(log.opened).toBe(1)
    // B twice more: four of the last six, A two: B takes the session over.
    mixes.ran(b)
    expect(log.opened).toBe(1)
    mixes.ran(b)
    expect(a.baked).toBeUndefined()
    expect(log).toMatchObject({ opened: 2, released: 1 })
    await baked(b)
    mixes.close()
    expect(log.released).toBe(2)
  }, 60_000)

  it('in the runner (sessions in threads of their own): a hot pinned mix decodes baked, the same tokens; closed with the model', async () => {
    const model = await loadModel(join(LM_ZOO, 'package'), {
      provider: 'cpu',
      threads: 1,
      mergeCache: { maxEntries: 1, maxBytes: 1 << 20 },
    })
    try {
      const { session, controls, merged } = model.twinGraph
      if (!merged?.bake) throw new Error('the runner offers no baking')
      const { prompts } = await setup()
      const mix = LM_TEST_MIXES[1] ?? []
      const tokens = async (merge: EngineOptions['merge']) => {
        const graph = new DecoderGraph(session, controls, 5, undefined, false, merged)
        const engine = new GenerationEngine(graph, { ...LM_TEST_ENGINE, merge })
        const out: number[][] = []
        for (const [i, ids] of prompts.slice(0, 3).entries()) {
          // After the first sequence, give the bake (a session thread starting) time to open.
          for (let w = 0; i === 1 && merge !== false && w < 500 && model.bakedSessions === 0; w++)
            await new Promise((r) => setTimeout(r, 10))
          const got: number[] = []
          for await (const e of engine.submit({
            promptIds: ids,
            maxTokens: 24,
            sampling: { temperature: 0, topP: 1, topK: 0 },
            controls: { mixWeights: mix },
          }))
            if (e.type === 'token') got.push(e.id)
          out.push(got)
        }
        return { out, counters: engine.counters }
      }
      const factored = await tokens(false)
      const baked = await tokens({ minSteps: 4, bakeWindow: 16 })
      expect(baked.out).toEqual(factored.out)
      // The last two sequences decode baked (23 passes each; the first of them checks the new session).
      expect(baked.counters.bakedPasses).toBeGreaterThanOrEqual(2 * 23 - 1)
      expect(model.bakedSessions).toBe(1)
      // The runner's --baked-mixes reaches the engine of its text generator.
      const profile = await LmProfile.load(join(LM_ZOO, 'models'))
      const off = new TextGenerator(model, profile, { ...LM_TEST_ENGINE, bakedMixes: 0 })
      expect(off.engine.options.merge).toEqual({ maxBaked: 0 })
    } finally {
      await model.close()
    }
    expect(model.bakedSessions).toBe(0)
  }, 60_000)
})
