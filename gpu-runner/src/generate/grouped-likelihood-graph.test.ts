/**
 * The grouped likelihood graph (issue 14, speed) on the LM zoo's twin package as the runner opens it, real
 * onnxruntime: it groups every block matrix's correction and the tied LM head's; on expert-major one-hot rows it
 * scores validation prompts as the likelihood graph does on prompt-major rows; the engine routes the same mixes and
 * greedy tokens with it; a pass with the router's row falls back to the logits; and where the rewrite cannot apply,
 * it says why.
 */

import { readFileSync } from 'node:fs'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { validationPrompts } from '../../test-support/lm-zoo.ts'
import { sameRouting } from '../../test-support/same-routing.ts'
import { loadModel } from '../model/load-model.ts'
import { int64Tensor } from '../onnx/graph-builder.ts'
import { onnx, toNumber } from '../onnx/proto.ts'
import { loadPackage } from '../package/load-package.ts'
import { openSession } from '../runtime/ort-session.ts'
import { checkContract } from '../twin-contract/check-contract.ts'
import { decoderAsServed } from './decoder-as-served.ts'
import { DecoderGraph } from './decoder-graph.ts'
import { GenerationEngine } from './engine.ts'
import { groupedLikelihoodGraph, ranksByExpert } from './grouped-likelihood-graph.ts'
import { likelihoodGraph } from './likelihood-graph.ts'
import { LmProfile } from './lm-profile.ts'
import { withoutNewKv } from './new-kv-outputs.ts'
import { promptEvidenceBatch, scoringFeeds, scoringRow } from './prompt-likelihood.ts'

const LM = join(import.meta.dirname, '../../../zoo/lm')

/**
 * Per token, grouped against ungrouped (both float32; σ is folded into U here and multiplied after x·U there, and
 * the products sum in another order). Measured 6e-7 nats on 32 held-out test prompts.
 */
const TOKEN_TOLERANCE = 1e-5
/** Per prompt, relative to its summed NLL. Measured 1.3e-7 on 32 held-out test prompts. */
const PROMPT_TOLERANCE = 1e-6

/** One package load and three sessions for the whole file (the machine is shared). */
let loaded: ReturnType<typeof load> | undefined
const setup = () => {
  loaded ??= load()
  return loaded
}

async function load() {
  const pkg = await loadPackage(join(LM, 'package'))
  const T = pkg.manifest.experts.length
  const served = decoderAsServed(pkg.model)
  const derived = likelihoodGraph(served)
  if (!('bytes' in derived)) throw new Error(derived.unavailable)
  const grouped = groupedLikelihoodGraph(derived.bytes, T)
  if (!('bytes' in grouped)) throw new Error(grouped.unavailable)
  const opts = { provider: 'cpu' as const, threads: 1 }
  const { session } = await openSession(served, opts)
  const plainScorer = (await openSession(derived.bytes, opts)).session
  const groupedScorer = (await openSession(grouped.bytes, opts)).session
  const controls = checkContract(pkg.manifest, withoutNewKv(session), new Map())
  const plain = new DecoderGraph(session, controls, T, plainScorer)
  const graph = new DecoderGraph(session, controls, T, groupedScorer, true)
  const profile = await LmProfile.load(join(LM, 'models'))
  // Validation prompts, four per domain: lengths differ, so passes pad.
  const prompts = validationPrompts(profile, 4)
  return { derived: derived.bytes, grouped, graph, plain, T, prompts }
}

describe('grouped likelihood graph (#14)', () => {
  it('groups the 18 block matrices and the tied LM head into [T, d_in, r] × [T, r, d_out] products', async () => {
    const { grouped, T } = await setup()
    if (!('bytes' in grouped)) throw new Error('not grouped')
    expect(grouped.grouped).toBe(19)
    const graph = onnx.ModelProto.decode(grouped.bytes).graph ?? {}
    const dims = (name: string) =>
      graph.initializer?.find((t) => t.name === name)?.dims?.map((d) => toNumber(d))
    // The LM head's correction (wte used transposed): [T, 128, 48] then [T, 48, 2048].
    const head = (graph.node ?? []).filter(
      (n) => n.opType === 'MatMul' && (n.input?.[1] ?? '').startsWith('grouped/twin/wte.weight/'),
    )
    expect(head.map((n) => dims(n.input?.[1] ?? ''))).toEqual([
      [T, 128, 48],
      [T, 48, 2048],
    ])
    // No per-row product over all R = 240 ranks is left but the embedding lookups' (Gather of U's rows).
    const perRow = (graph.node ?? []).filter((n) => n.name?.endsWith('/xus_node'))
    expect(perRow.map((n) => n.name).sort()).toEqual([
      'twin/wpe.weight/xus_node',
      'twin/wte.weight/xus_node',
    ])
  })

  it('scores expert-major rows as the likelihood graph scores prompt-major ones, padded rows included', async () => {
    const { graph, plain, T, prompts } = await setup()
    const batch = prompts.slice(0, 6)
    const P = batch.length
    const a = scoringFeeds(plain, batch)
    const b = scoringFeeds(graph, batch, false, true)
    // Expert-major: rows 0…P−1 are expert 0's.
    expect(b.controls[1]?.mixWeights?.[0]).toBe(1)
    expect(b.controls[P]?.mixWeights?.[1]).toBe(1)
    const want = await plain.score(a)
    const got = await graph.score(b)
    const S = a.seq
    let worst = 0
    for (const [k, p] of batch.entries())
      for (let e = 0; e < T; e++) {
        let x = 0
        let y = 0
        for (let s = 0; s + 1 < p.length; s++) {
          const u = -(want.logprobs[scoringRow(k, e, P, T, false) * S + s] as number)
          const v = -(got.logprobs[scoringRow(k, e, P, T, true) * S + s] as number)
          worst = Math.max(worst, Math.abs(u - v))
          x += u
          y += v
        }
        expect(Math.abs(y - x) / x).toBeLessThan(PROMPT_TOLERANCE)
      }
    expect(worst).toBeLessThan(TOKEN_TOLERANCE)
  }, 30_000)

  it('gives the engine the same mixes and greedy tokens; a pass with the router row scores from the logits', async () => {
    const { graph, plain, T, prompts } = await setup()
    const engine = (g: DecoderGraph) =>
      new GenerationEngine(g, {
        maxContext: 256,
        maxSequences: 32,
        maxBytes: 64 * 1024 * 1024,
        prefillTokensPerStep: 10_000,
        promptLikelihood: { temperature: 2 },
      })
    const [a, b] = [engine(graph), engine(plain)]
    const { got, want, worst } = await sameRouting(a, b, prompts)
    expect(a.counters.likelihoodPasses).toBe(b.counters.likelihoodPasses)
    for (const [k, g] of got.entries()) {
      expect(g.weights).toHaveLength(T)
      expect(g.ids).toEqual(want[k]?.ids)
    }
    // softmax(−NLL/τ) moves by at most |ΔNLL|/τ.
    expect(worst).toBeLessThan(1e-5)

    // The router's row cannot ride in a grouped pass: such a pass takes the logits path, prompt-major.
    expect(() => scoringFeeds(graph, prompts.slice(0, 2), true, true)).toThrow(/router row/)
    const [withRouter] = await promptEvidenceBatch(graph, prompts.slice(0, 1), true)
    const [reference] = await promptEvidenceBatch(plain, prompts.slice(0, 1), true)
    expect(withRouter?.router).toHaveLength(T)
    for (let e = 0; e < T; e++) {
      const x = reference?.nll[e] as number
      expect(Math.abs((withRouter?.nll[e] as number) - x) / x).toBeLessThan(PROMPT_TOLERANCE)
      expect(withRouter?.router?.[e]).toBeCloseTo(reference?.router?.[e] as number, 6)
    }
  }, 60_000)

  it('says why it does not apply: no stacked factors, unequal ranks per expert, one expert', async () => {
    const { derived, T } = await setup()
    // The base decoder: a likelihood graph with no twin corrections at all.
    const base = likelihoodGraph(new Uint8Array(readFileSync(join(LM, 'models/base.onnx'))))
    if (!('bytes' in base)) throw new Error(base.unavailable)
    expect(groupedLikelihoodGraph(base.bytes, T)).toEqual({
      unavailable:
        'no correction multiplies stacked per-expert factors (x·U ⊙ s(w))·Vᵀ with the batch leading',
    })
    // The package's graph with rank 0 handed to expert 1: expert 0 owns 47 ranks, expert 1 49.
    const model = onnx.ModelProto.decode(derived)
    const inits = model.graph?.initializer ?? []
    const at = inits.findIndex((t) => t.name?.endsWith('.twin_expert_of_rank'))
    const eor = Array.from({ length: 48 * T }, (_, k) => Math.floor(k / 48))
    eor[0] = 1
    inits[at] = int64Tensor(inits[at]?.name ?? '', eor, [48 * T])
    const unequal = groupedLikelihoodGraph(onnx.ModelProto.encode(model).finish(), T)
    expect(unequal).toMatchObject({
      unavailable: expect.stringMatching(/different numbers of ranks \(47, 49, 48, 48, 48\)/),
    })
    expect(groupedLikelihoodGraph(derived, 1)).toEqual({
      unavailable: '1 experts: nothing to group',
    })
  }, 30_000)

  it('the runner opens it for the package, and keeps the ungrouped graph when the router row rides along', async () => {
    const opts = {
      provider: 'cpu' as const,
      threads: 1,
      sessionThreads: false,
      mergeCache: { maxEntries: 1, maxBytes: 1 << 20 },
    }
    const served = await loadModel(join(LM, 'package'), opts)
    expect(served.likelihoodScoring).toBe('likelihood graph, grouped (19 corrections per expert)')
    expect(served.twinGraph.likelihoodGrouped).toBe(true)
    // The same package with router_weight 1: its scoring pass carries the router's row, which a grouped pass cannot.
    const dir = await mkdtemp(join(tmpdir(), 'twinserve-lm-group-'))
    try {
      await copyFile(join(LM, 'package/model.onnx'), join(dir, 'model.onnx'))
      const manifest = JSON.parse(await readFile(join(LM, 'package/manifest.json'), 'utf8'))
      manifest.router.promptLikelihood = { ...manifest.router.promptLikelihood, routerWeight: 1 }
      await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest))
      const withRouter = await loadModel(dir, opts)
      expect(withRouter.likelihoodScoring).toBe(
        "likelihood graph (not grouped: the router's row rides in the scoring pass (router_weight ≠ 0))",
      )
      expect(withRouter.twinGraph.likelihoodGrouped).toBe(false)
      await withRouter.close()
    } finally {
      await served.close()
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('groups rank indices per expert, in any order, when every expert owns as many', () => {
    expect(ranksByExpert([0, 0, 1, 1], 2)).toEqual([
      [0, 1],
      [2, 3],
    ])
    expect(ranksByExpert([1, 0, 0, 1], 2)).toEqual([
      [1, 2],
      [0, 3],
    ])
    expect(ranksByExpert([0, 2], 2)).toMatch(/rank 1 belongs to expert 2/)
    expect(ranksByExpert([], 2)).toBe('no expert owns a rank')
  })
})
