/**
 * The likelihood graph (issue 14, speed) on the LM zoo's twin package as the runner opens it, real onnxruntime: it
 * returns [rows, S] target log-probabilities and nothing big; they match tokenNll (float64 log-sum-exp) on the
 * served graph's logits for held-out validation prompts; the engine routes the same mixes with it as from the
 * logits; and where the rewrite cannot apply, it says why.
 */
import { join } from 'node:path'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { validationPrompts } from '../../test-support/lm-zoo.ts'
import { sameRouting } from '../../test-support/same-routing.ts'
import { GraphBuilder } from '../onnx/graph-builder.ts'
import { type INodeProto, onnx } from '../onnx/proto.ts'
import { loadPackage } from '../package/load-package.ts'
import { openSession } from '../runtime/ort-session.ts'
import { checkContract } from '../twin-contract/check-contract.ts'
import { decoderAsServed } from './decoder-as-served.ts'
import { DecoderGraph } from './decoder-graph.ts'
import { GenerationEngine } from './engine.ts'
import { likelihoodGraph, TARGET_IDS, TARGET_LOGPROBS } from './likelihood-graph.ts'
import { LmProfile } from './lm-profile.ts'
import { withoutNewKv } from './new-kv-outputs.ts'
import { promptEvidenceBatch, scoringFeeds, tokenNll } from './prompt-likelihood.ts'

const LM = join(import.meta.dirname, '../../../zoo/lm')

/** Per token, the likelihood graph's float32 log-softmax against tokenNll's float64 one (measured: 1.0e-6 nats). */
const TOKEN_TOLERANCE = 1e-5
/** Per prompt, relative to its summed NLL (measured: ≤ 3e-8 here, 3.2e-8 on 32 held-out test prompts). */
const PROMPT_TOLERANCE = 1e-6

async function setup() {
  const pkg = await loadPackage(join(LM, 'package'))
  const served = decoderAsServed(pkg.model)
  const derived = likelihoodGraph(served)
  if (!('bytes' in derived)) throw new Error(derived.unavailable)
  const opts = { provider: 'cpu' as const, threads: 1 }
  const { session } = await openSession(served, opts)
  const scorer = (await openSession(derived.bytes, opts)).session
  const controls = checkContract(pkg.manifest, withoutNewKv(session), new Map())
  const T = pkg.manifest.experts.length
  const graph = new DecoderGraph(session, controls, T, scorer)
  const profile = await LmProfile.load(join(LM, 'models'))
  // Validation prompts, four per domain: lengths differ, so passes pad.
  const prompts = validationPrompts(profile, 4)
  return { derived: derived.bytes, graph, T, profile, prompts }
}

describe('likelihood graph (#14)', () => {
  it('returns the target log-probabilities and the applied weights only (no logits, no present), dead nodes pruned', async () => {
    const { derived } = await setup()
    const graph = onnx.ModelProto.decode(derived).graph ?? {}
    expect((graph.output ?? []).map((o) => o.name)).toEqual([TARGET_LOGPROBS, TWIN_OUTPUT_WEIGHTS])
    expect((graph.input ?? []).map((i) => i.name)).toContain(TARGET_IDS)
    // The Identity nodes that exposed the new keys and values fed only those outputs (the Concats that make
    // `present` stay: attention reads them).
    const made = new Set((graph.node ?? []).flatMap((n) => n.output ?? []))
    expect([...made].filter((n) => n.startsWith('new_key_values.'))).toEqual([])
    // Every initializer is still read, by a node or inside a subgraph (the router runs in an If branch).
    const reads = (nodes: readonly INodeProto[]): string[] =>
      nodes.flatMap((n) => [
        ...(n.input ?? []),
        ...(n.attribute ?? []).flatMap((a) => reads([...(a.g?.node ?? [])])),
      ])
    const read = new Set(reads(graph.node ?? []))
    expect((graph.initializer ?? []).filter((t) => !read.has(t.name ?? ''))).toEqual([])
  })

  it('scores validation prompts as tokenNll does on the served logits, padded rows included', async () => {
    const { graph, T, prompts } = await setup()
    const batch = prompts.slice(0, 6)
    const { targets, ...feeds } = scoringFeeds(graph, batch)
    const { batch: B, seq: S } = feeds
    const logits = await graph.run({ ...feeds, keys: false })
    const scored = await graph.score({ ...feeds, targets })
    expect(scored.logprobs).toHaveLength(B * S)
    let worst = 0
    for (const [k, p] of batch.entries())
      for (let e = 0; e < T; e++) {
        const row = k * T + e
        let js = 0
        let inGraph = 0
        for (let s = 0; s + 1 < p.length; s++) {
          const at = (row * S + s) * logits.vocab
          const want = tokenNll(logits.logits.subarray(at, at + logits.vocab), p[s + 1] as number)
          const got = -(scored.logprobs[row * S + s] as number)
          worst = Math.max(worst, Math.abs(got - want))
          js += want
          inGraph += got
        }
        expect(Math.abs(inGraph - js) / js).toBeLessThan(PROMPT_TOLERANCE)
      }
    expect(worst).toBeLessThan(TOKEN_TOLERANCE)
  }, 30_000)

  it('gives the same evidence and the engine the same mixes and tokens as scoring from the logits', async () => {
    const { graph, T, prompts } = await setup()
    const inGraph = await promptEvidenceBatch(graph, prompts, true, true)
    const fromLogits = await promptEvidenceBatch(graph, prompts, true, false)
    for (const [k, ev] of inGraph.entries()) {
      const want = fromLogits[k]
      expect(ev.tokens).toBe(want?.tokens)
      for (let e = 0; e < T; e++) {
        const x = want?.nll[e] as number
        expect(Math.abs((ev.nll[e] as number) - x) / x).toBeLessThan(PROMPT_TOLERANCE)
        expect(ev.router?.[e]).toBeCloseTo(want?.router?.[e] as number, 6)
      }
    }

    const engine = (likelihoodInGraph: boolean) =>
      new GenerationEngine(graph, {
        maxContext: 256,
        maxSequences: 32,
        maxBytes: 64 * 1024 * 1024,
        prefillTokensPerStep: 10_000,
        promptLikelihood: { temperature: 2 },
        likelihoodInGraph,
      })
    const [a, b] = [engine(true), engine(false)]
    const { got, want, worst } = await sameRouting(a, b, prompts)
    expect(a.counters.likelihoodPasses).toBe(b.counters.likelihoodPasses)
    for (const [k, g] of got.entries()) {
      expect(g.weights).toHaveLength(T)
      expect(g.ids).toEqual(want[k]?.ids)
    }
    // softmax(−NLL/τ) moves by at most |ΔNLL|/τ, a few 1e-6 here (measured: 1.2e-7, one float32 ulp at 1).
    expect(worst).toBeLessThan(1e-5)
  }, 60_000)

  it('says why it does not apply: no logits, non-float logits, opset before 13, already rewritten', async () => {
    const decoder = (opset: number, elem: 'float' | 'int64' = 'float', out = 'logits') => {
      const b = new GraphBuilder('g')
        .input('input_ids', elem, ['batch', 'seq', 4])
        .output(out, elem, ['batch', 'seq', 4])
      b.node('Identity', ['input_ids'], { outputs: [out] })
      return b.build({ opset })
    }
    expect(likelihoodGraph(decoder(17, 'float', 'scores'))).toEqual({
      unavailable: 'the graph has no `logits` output',
    })
    expect(likelihoodGraph(decoder(17, 'int64'))).toEqual({
      unavailable: '`logits` is not float32',
    })
    expect(likelihoodGraph(decoder(12))).toEqual({
      unavailable: 'the graph imports opset 12; the rewrite needs 13 or later',
    })
    const once = likelihoodGraph(decoder(17))
    if (!('bytes' in once)) throw new Error(once.unavailable)
    expect(likelihoodGraph(once.bytes)).toEqual({ unavailable: 'the graph has no `logits` output' })
    // The toy graph's rewrite runs in onnxruntime: log-softmax of the row, picked at the target.
    const { session } = await openSession(once.bytes, { provider: 'cpu', threads: 1 })
    const { ort } = await import('../runtime/ort-session.ts')
    const x = Float32Array.from([0, 1, 2, 3, 3, 2, 1, 0])
    const out = await session.run({
      input_ids: new ort.Tensor('float32', x, [1, 2, 4]),
      [TARGET_IDS]: new ort.Tensor('int64', BigInt64Array.from([3n, 1n]), [1, 2]),
    })
    const got = out[TARGET_LOGPROBS]?.data as Float32Array
    expect(got[0]).toBeCloseTo(-tokenNll(x.subarray(0, 4), 3), 6)
    expect(got[1]).toBeCloseTo(-tokenNll(x.subarray(4, 8), 1), 6)
  })

  it('a DecoderGraph refuses a scorer that is not a likelihood graph', async () => {
    const pkg = await loadPackage(join(LM, 'package'))
    const { session } = await openSession(pkg.model, { provider: 'cpu', threads: 1 })
    expect(() => new DecoderGraph(session, [], 0, session)).toThrow(/not a likelihood graph/)
  })
})
