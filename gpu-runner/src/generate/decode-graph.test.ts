/**
 * The decode graph (issue 14, speed) on the LM zoo's twin package as the runner opens it, real onnxruntime: the
 * rewrite folds every correction's σ and joins every [batch, 1, d] vector delta; on validation prompts its logits
 * and new keys and values match the graph as served's to float32 rounding at prefill and at a decode step, with
 * one-hot, dense and zero mixes and a router row; the engine decodes the same greedy tokens; the runner's decode
 * session takes it while the likelihood graph, derived from the graph as served, is still grouped; a graph without
 * the pattern is left alone; and on the builder's other twin graphs (float32, int8 with ragged ranks from a budget,
 * top-k gather, shared basis) it rewrites what matches and the outputs agree.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { lmPassFeeds, tensorMaxAbsDiff, validationPrompts } from '../../test-support/lm-zoo.ts'
import { writeBuildFixture } from '../../test-support/test-models.ts'
import { buildPackage } from '../build/build-package.ts'
import { modelInputs, syntheticFeeds } from '../build/import/model-io.ts'
import { readOnnx } from '../build/import/read-onnx.ts'
import { createReporter } from '../build/pipeline/progress.ts'
import { loadModel } from '../model/load-model.ts'
import { onnx } from '../onnx/proto.ts'
import { loadPackage } from '../package/load-package.ts'
import { openSession, type ort } from '../runtime/ort-session.ts'
import { checkContract } from '../twin-contract/check-contract.ts'
import { encodeControls } from '../twin-contract/encode-controls.ts'
import { decodeGraph } from './decode-graph.ts'
import { decoderAsServed } from './decoder-as-served.ts'
import { DecoderGraph } from './decoder-graph.ts'
import { GenerationEngine, type GenerationEvent } from './engine.ts'
import { LmProfile } from './lm-profile.ts'
import { withoutNewKv } from './new-kv-outputs.ts'

const LM = join(import.meta.dirname, '../../../zoo/lm')
/**
 * Logits, decode graph against the graph as served (both float32; σ scales Vᵀ here and the rank weights there,
 * the bias and LayerNorm terms sum in another order). Measured 1.14e-5 at most over 150 validation prompts at
 * prefill (logits up to 20.2, so ~5 float32 ulps); the graph as served itself moves by as much, 1.14e-5 on the same
 * prompts, between a row run alone and the same row in a batch of four.
 */
const LOGIT_TOLERANCE = 2e-5
const KV_TOLERANCE = 1e-5
const OPTIONS = {
  maxContext: 256,
  maxSequences: 16,
  maxBytes: 64 * 1024 * 1024,
  prefillTokensPerStep: 24,
}
/** Rows of every pass: one-hot, dense, all zero (the shared model), and the router's row. */
const ROWS = [
  { mixWeights: [0, 0, 1, 0, 0] },
  { mixWeights: [0.1, 0.3, 0.05, 0.4, 0.15] },
  { mixWeights: [0, 0, 0, 0, 0] },
  { useRouter: 1 },
]

let loaded: ReturnType<typeof load> | undefined
const setup = () => {
  loaded ??= load()
  return loaded
}

async function load() {
  const pkg = await loadPackage(join(LM, 'package'))
  const served = decoderAsServed(pkg.model)
  const rewritten = decodeGraph(served)
  if (!('bytes' in rewritten)) throw new Error(rewritten.unavailable)
  const opts = { provider: 'cpu' as const, threads: 1 }
  const before = (await openSession(served, opts)).session
  const after = (await openSession(rewritten.bytes, opts)).session
  const controls = checkContract(pkg.manifest, withoutNewKv(before), new Map())
  const profile = await LmProfile.load(join(LM, 'models'))
  // Validation prompts, two per domain.
  const prompts = validationPrompts(profile, 2)
  return { pkg, served, rewritten, before, after, controls, prompts }
}

describe('decode graph (#14)', () => {
  it('joins the 32 [batch, 1, d] vector deltas, 25 carrying their shared values, and keeps the float16 factors', async () => {
    const { served, rewritten } = await setup()
    if (!('bytes' in rewritten)) throw new Error('no rewrite')
    // zoo/lm stores its factors in float16: folding σ into them would make float32 copies (fold-rank-scales.ts).
    expect(rewritten.foldedScales).toBe(0)
    // The LM head's bias is broadcast per position ([batch·seq, vocab]) and stays as it was.
    expect(rewritten.joinedVectors).toBe(32)
    // 18 biases (q, k, v, o, fc_in, fc_out per block) and the 7 LayerNorms (γ and β each).
    expect(rewritten.foldedBases).toBe(25)
    const count = (bytes: Uint8Array, op?: string) =>
      (onnx.ModelProto.decode(bytes).graph?.node ?? []).filter((n) => !op || n.opType === op).length
    expect(count(served)).toBe(621)
    expect(count(rewritten.bytes)).toBe(528)
    // No initializer wider than the package's: the float16 factors stay float16.
    const halves = (bytes: Uint8Array) =>
      (onnx.ModelProto.decode(bytes).graph?.initializer ?? []).filter((t) => t.dataType === 10)
        .length
    expect(halves(rewritten.bytes)).toBe(halves(served))
    // One shared LayerNorm fewer per LayerNorm; one product for the vector deltas.
    expect(count(served, 'LayerNormalization') - count(rewritten.bytes, 'LayerNormalization')).toBe(
      7,
    )
    // Rewriting again finds nothing left to fold or join.
    expect(decodeGraph(rewritten.bytes)).toEqual({
      unavailable: 'no correction matches the patterns folded',
    })
  })

  it('matches the graph as served at prefill and at a decode step on validation prompts, every kind of row', async () => {
    const { before, after, controls, prompts } = await setup()
    let worstLogit = 0
    let worstKv = 0
    for (const ids of prompts) {
      const S = ids.length
      const step = async (input: number[], past: number, pastKv?: Record<string, ort.Tensor>) => {
        const feeds = lmPassFeeds(ROWS, input, past, controls, pastKv)
        const a = await before.run(feeds)
        const b = await after.run(feeds)
        worstLogit = Math.max(worstLogit, tensorMaxAbsDiff(a.logits, b.logits))
        for (const name of before.outputNames.filter((o) => o.startsWith('present')))
          worstKv = Math.max(worstKv, tensorMaxAbsDiff(a[name], b[name]))
        expect(b.expert_weights?.data).toEqual(a.expert_weights?.data)
        return a
      }
      const prefill = await step(ids, 0)
      // A decode step on the served graph's past, both graphs fed the same.
      await step([ids[S - 1] ?? 0], S, prefill)
    }
    expect(worstLogit).toBeLessThan(LOGIT_TOLERANCE)
    expect(worstKv).toBeLessThan(KV_TOLERANCE)
  }, 60_000)

  it('the engine decodes the same greedy tokens with it, mixes side by side', async () => {
    const { pkg, before, after, prompts } = await setup()
    const tokens = async (session: ort.InferenceSession) => {
      const controls = checkContract(pkg.manifest, withoutNewKv(session), new Map())
      const engine = new GenerationEngine(new DecoderGraph(session, controls, 5), OPTIONS)
      return Promise.all(
        prompts.map(async (ids, i) => {
          const got: number[] = []
          for await (const e of engine.submit({
            promptIds: ids,
            maxTokens: 12,
            sampling: { temperature: 0, topP: 1, topK: 0 },
            controls: ROWS[i % ROWS.length] ?? {},
          }) as AsyncIterable<GenerationEvent>)
            if (e.type === 'token') got.push(e.id)
          return got
        }),
      )
    }
    const expected = await tokens(before)
    expect(expected.every((t) => t.length === 12)).toBe(true)
    expect(await tokens(after)).toEqual(expected)
  }, 60_000)

  it('the runner decodes with it, and still scores prompts in the grouped likelihood graph', async () => {
    const model = await loadModel(join(LM, 'package'), {
      provider: 'cpu',
      threads: 1,
      sessionThreads: false,
      mergeCache: { maxEntries: 1, maxBytes: 1 << 20 },
    })
    try {
      expect(model.decodeGraph).toBe(
        'σ folded in 0 corrections, 32 vector deltas in one product carrying 25 shared biases and LayerNorms',
      )
      expect(model.likelihoodScoring).toBe('likelihood graph, grouped (19 corrections per expert)')
    } finally {
      await model.close()
    }
  }, 60_000)

  it('leaves a decoder without corrections alone', () => {
    const base = decoderAsServed(new Uint8Array(readFileSync(join(LM, 'models/base.onnx'))))
    expect(decodeGraph(base)).toEqual({ unavailable: 'no correction matches the patterns folded' })
  })
})

const root = await mkdtemp(join(tmpdir(), 'twinserve-decode-graph-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe.each([
  ['float32', { rank: 4, dtype: 'float32' }],
  ['int8, ragged ranks from a budget', { budget: 0.3, dtype: 'int8' }],
  ['top-2 gather', { rank: 4, dtype: 'float16', topk_gather: 2 }],
  ['shared basis', { shared_basis: { rank: 6 }, dtype: 'float16' }],
] as const)('decode graph on the generated transformer block, %s', (label, exclusive) => {
  it('rewrites what matches, never fails, and agrees with the twin graph on every kind of row', async () => {
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
    const rewritten = decodeGraph(pkg.model)
    const before = (await openSession(pkg.model, { provider: 'cpu', threads: 1 })).session
    const after =
      'bytes' in rewritten
        ? (await openSession(rewritten.bytes, { provider: 'cpu', threads: 1 })).session
        : before
    const rows = [
      { mixWeights: [0, 0.7, 0, 0.3] },
      { mixWeights: [0, 0, 1, 0] },
      { mixWeights: [0, 0, 0, 0] },
      { useRouter: 1 },
    ]
    const x = syntheticFeeds(modelInputs((await readOnnx(fx.base)).graph), rows.length, 5)
    const feeds = { ...x, ...encodeControls(rows, T) }
    const a = await before.run(feeds)
    const b = await after.run(feeds)
    const zero = await before.run({
      ...x,
      ...encodeControls(
        rows.map(() => ({})),
        T,
      ),
    })
    // The check has teeth: the experts move the outputs far more than the tolerance.
    expect(tensorMaxAbsDiff(a.logits, zero.logits)).toBeGreaterThan(1e-2)
    expect(tensorMaxAbsDiff(a.logits, b.logits)).toBeLessThan(1e-5)
    // Dense float32 factors fold σ at every site; narrower factors (which would widen) and the gathered and
    // shared-basis corrections keep theirs.
    const folds = exclusive.dtype === 'float32' && !('topk_gather' in exclusive)
    expect('bytes' in rewritten && rewritten.foldedScales > 0).toBe(folds)
  }, 60_000)
})
