/**
 * Routing by the prompt's likelihood (issue 14) on the LM zoo's twin package, real onnxruntime: the engine applies
 * softmax(−NLL_e / τ) of one-hot passes computed here one expert at a time, holds it through decode, leaves an
 * explicit mix and the shared model alone, and lets the router route a one-token prompt.
 */
import { describe, expect, it } from 'vitest'
import { lmTwinGraph } from '../../test-support/lm-zoo.ts'
import type { RowControls } from '../twin-contract/encode-controls.ts'
import type { DecoderGraph } from './decoder-graph.ts'
import { GenerationEngine, type GenerationEvent } from './engine.ts'
import {
  lengthGroups,
  likelihoodWeights,
  type PromptLikelihoodOptions,
} from './prompt-likelihood.ts'
import { logSoftmax } from './sampler.ts'

const TAU = 2

async function setup() {
  const { graph, profile, T } = await lmTwinGraph()
  const engine = (likelihood: boolean | PromptLikelihoodOptions, prefillTokensPerStep = 256) =>
    new GenerationEngine(graph, {
      maxContext: 256,
      maxSequences: 4,
      maxBytes: 64 * 1024 * 1024,
      prefillTokensPerStep,
      ...(likelihood === true
        ? { promptLikelihood: { temperature: TAU } }
        : likelihood
          ? { promptLikelihood: likelihood }
          : {}),
    })
  return { graph, profile, T, engine }
}

async function run(events: AsyncIterable<GenerationEvent>) {
  const got = { weights: [] as number[], ids: [] as number[], logprobs: [] as number[] }
  for await (const e of events) {
    if (e.type === 'start') got.weights = [...(e.expertWeights ?? [])]
    if (e.type === 'token') {
      got.ids.push(e.id)
      got.logprobs.push(e.logprob ?? Number.NaN)
    }
    if (e.type === 'error') throw e.error
  }
  return got
}

const request = (promptIds: number[], controls: RowControls) => ({
  promptIds,
  maxTokens: 6,
  sampling: { temperature: 0, topP: 1, topK: 0, logprobs: 1 },
  controls,
})

/** The prompt's NLL under expert e's one-hot mix, one expert per pass (not the engine's batched pass). */
async function oneHotNll(graph: DecoderGraph, ids: number[], e: number): Promise<number> {
  const n = ids.length
  const mix = new Float32Array(graph.experts)
  mix[e] = 1
  const out = await graph.run({
    batch: 1,
    seq: n,
    past: 0,
    ids: BigInt64Array.from(ids, BigInt),
    mask: new BigInt64Array(n).fill(1n),
    positions: BigInt64Array.from(ids, (_, i) => BigInt(i)),
    cache: Array.from({ length: 2 * graph.layout.layers }, () => new Float32Array(0)),
    controls: [{ mixWeights: mix }],
  })
  let nll = 0
  for (let s = 0; s + 1 < n; s++)
    nll -= logSoftmax(out.logits.subarray(s * out.vocab, (s + 1) * out.vocab))[
      ids[s + 1] as number
    ] as number
  return nll
}

/** The graph router's applied weights on the prompt alone (dense: top-k T), its own pass. */
async function routerWeights(graph: DecoderGraph, ids: number[]): Promise<number[]> {
  const n = ids.length
  const out = await graph.run({
    batch: 1,
    seq: n,
    past: 0,
    ids: BigInt64Array.from(ids, BigInt),
    mask: new BigInt64Array(n).fill(1n),
    positions: BigInt64Array.from(ids, (_, i) => BigInt(i)),
    cache: Array.from({ length: 2 * graph.layout.layers }, () => new Float32Array(0)),
    controls: [{ useRouter: 1, topK: graph.experts }],
  })
  return [...(out.weights ?? [])].slice(0, graph.experts)
}

describe('prompt-likelihood routing (#14)', () => {
  it('applies softmax(−NLL/τ) of the one-hot passes, holds it through decode, and leaves explicit mixes, shared and one-token prompts alone', async () => {
    const { graph, profile, T, engine } = await setup()
    const router: RowControls = { useRouter: 1, expertMask: new Float32Array(T).fill(1), topK: T }
    const prompt = profile.encodePrompt(
      'Dear team, please find attached the minutes of the meeting',
    )
    expect(prompt.length).toBeGreaterThan(8)

    const nll = await Promise.all(Array.from({ length: T }, (_, e) => oneHotNll(graph, prompt, e)))
    const scores = nll.map((x) => Math.exp(-x / TAU))
    const expected = scores.map((x) => x / scores.reduce((a, b) => a + b, 0))

    const likely = engine(true)
    const routed = await run(likely.submit(request(prompt, router)))
    expect(likely.counters.likelihoodPasses).toBe(1)
    expect(routed.weights).toHaveLength(T)
    for (const [e, w] of routed.weights.entries()) expect(w).toBeCloseTo(expected[e] as number, 5)
    // Not what the graph's router applies to the same prompt.
    const plain = engine(false)
    const byRouter = await run(plain.submit(request(prompt, router)))
    expect(
      Math.max(...routed.weights.map((w, e) => Math.abs(w - (byRouter.weights[e] ?? 0)))),
    ).toBeGreaterThan(0.01)

    // Held through decode: the same greedy tokens and log-probabilities as that mix given explicitly.
    const explicit = await run(
      plain.submit(request(prompt, { mixWeights: Float32Array.from(routed.weights) })),
    )
    expect(routed.ids).toEqual(explicit.ids)
    for (const [i, lp] of routed.logprobs.entries())
      expect(lp).toBeCloseTo(explicit.logprobs[i] as number, 4)

    // An explicit mix and the shared model are the request's: no likelihood pass.
    const mix = Float32Array.from({ length: T }, (_, e) => (e === 1 ? 0.25 : e === 2 ? 0.75 : 0))
    expect((await run(likely.submit(request(prompt, { mixWeights: mix })))).weights).toEqual([
      ...mix,
    ])
    expect((await run(likely.submit(request(prompt, {})))).weights).toEqual(new Array(T).fill(0))
    expect(likely.counters.likelihoodPasses).toBe(1)

    // A one-token prompt has no likelihood: the router routes it.
    const bos = prompt.slice(0, 1)
    const one = await run(likely.submit(request(bos, router)))
    expect(likely.counters.likelihoodPasses).toBe(1)
    expect(one.weights).toEqual((await run(plain.submit(request(bos, router)))).weights)
    expect(likely.kvBytes).toBe(0)
  }, 30_000)

  it('a prompt routed by its likelihood counts T + 1 times its tokens against the per-step prefill budget', async () => {
    const { profile, T, engine } = await setup()
    const router: RowControls = { useRouter: 1 }
    const prompt = profile.encodePrompt('The proof of the pudding is in the eating')
    // Budget: one likelihood-routed prefill, or T + 1 plain ones. A first sequence keeps step 1 busy, so that
    // the next two wait together and step 2 chooses between them.
    const three = async (e: GenerationEngine) => {
      const one = () => run(e.submit({ ...request(prompt, router), maxTokens: 1 }))
      await Promise.all([one(), one(), one()])
      return e.counters.steps
    }
    expect(await three(engine(false, prompt.length * (T + 1)))).toBe(2)
    expect(await three(engine(true, prompt.length * (T + 1)))).toBe(3)
  })

  it('cascade (routerAbove): a sure router keeps its prefill with no scoring pass, the others are routed by likelihood, in one step', async () => {
    const { profile, T, engine } = await setup()
    const router: RowControls = { useRouter: 1, expertMask: new Float32Array(T).fill(1), topK: T }
    const prompts = [
      'Dear team, please find attached the minutes of the meeting',
      'The proof of the pudding is in the eating',
    ].map((p) => profile.encodePrompt(p))
    const plain = engine(false)
    const likely = engine(true)
    const byRouter: Awaited<ReturnType<typeof run>>[] = []
    const byLikelihood: Awaited<ReturnType<typeof run>>[] = []
    for (const p of prompts) {
      byRouter.push(await run(plain.submit(request(p, router))))
      byLikelihood.push(await run(likely.submit(request(p, router))))
    }
    const top = byRouter.map((r) => Math.max(...r.weights))
    // θ between the two prompts' largest router weights: the surer keeps the router, the other is scored.
    expect(Math.abs((top[0] as number) - (top[1] as number))).toBeGreaterThan(1e-3)
    const theta = ((top[0] as number) + (top[1] as number)) / 2
    const cascade = engine({ temperature: TAU, routerAbove: theta })
    const got = await Promise.all(prompts.map((p) => run(cascade.submit(request(p, router)))))
    expect(cascade.counters.routerKept).toBe(1)
    expect(cascade.counters.likelihoodPasses).toBe(1)
    for (const k of [0, 1]) {
      const want = (top[k] as number) >= theta ? byRouter[k] : byLikelihood[k]
      for (const [e, w] of (got[k]?.weights ?? []).entries())
        expect(w).toBeCloseTo(want?.weights[e] as number, 5)
      // The kept KV and the re-prefilled one decode as their routes do alone.
      expect(got[k]?.ids).toEqual(want?.ids)
      for (const [i, lp] of (got[k]?.logprobs ?? []).entries())
        expect(lp).toBeCloseTo(want?.logprobs[i] as number, 4)
    }
    // The router's and the likelihood's mixes differ for the scored prompt: the fallback really re-prefilled.
    const scored = (top[0] as number) >= theta ? 1 : 0
    const diff = (byRouter[scored]?.weights ?? []).map((w, e) =>
      Math.abs(w - (byLikelihood[scored]?.weights[e] ?? 0)),
    )
    expect(Math.max(...diff)).toBeGreaterThan(0.01)
    expect(cascade.kvBytes).toBe(0)
  }, 30_000)

  it('the levers (per-token NLL, a log prior, × router^b, top-1 when confident) apply the formula to one-expert-at-a-time passes', async () => {
    const { graph, profile, T, engine } = await setup()
    const router: RowControls = { useRouter: 1 }
    const prompt = profile.encodePrompt('Mr. Speaker, the state of our Union is strong, and')
    const n = prompt.length
    const nll = await Promise.all(Array.from({ length: T }, (_, e) => oneHotNll(graph, prompt, e)))
    const r = await routerWeights(graph, prompt)
    const prior = [0.3, -0.2, 0.1, 0.8, -1]
    const levers: PromptLikelihoodOptions = {
      temperature: 0.4,
      perToken: true,
      logPrior: prior,
      routerWeight: 0.2,
    }
    // Written out here, not with likelihoodPosterior: logit_e = −NLL_e/(n−1)/τ + prior_e + b·ln max(r_e, 1e-6).
    const logits = nll.map(
      (x, e) =>
        -x / (n - 1) / 0.4 + (prior[e] as number) + 0.2 * Math.log(Math.max(r[e] as number, 1e-6)),
    )
    const z = logits.map((x) => Math.exp(x - Math.max(...logits)))
    const expected = z.map((x) => x / z.reduce((a, b) => a + b, 0))
    expect(Math.max(...expected)).toBeLessThan(0.99) // a mix, so each lever shows in it

    const e1 = engine(levers)
    const got = await run(e1.submit(request(prompt, router)))
    expect(e1.counters.likelihoodPasses).toBe(1)
    for (const [e, w] of got.weights.entries()) expect(w).toBeCloseTo(expected[e] as number, 5)
    // Without the router factor the mix differs: the router row really fed in.
    const noRouter = await run(
      engine({ ...levers, routerWeight: 0 }).submit(request(prompt, router)),
    )
    expect(
      Math.max(...noRouter.weights.map((w, e) => Math.abs(w - (got.weights[e] ?? 0)))),
    ).toBeGreaterThan(1e-3)

    // Top-1 when confident: a threshold at or below the largest weight routes to that expert alone.
    const top = expected.indexOf(Math.max(...expected))
    const hard = await run(
      engine({ ...levers, hardAbove: Math.max(...expected) - 1e-3 }).submit(
        request(prompt, router),
      ),
    )
    expect(hard.weights).toEqual(expected.map((_, e) => (e === top ? 1 : 0)))
    const soft = await run(
      engine({ ...levers, hardAbove: Math.max(...expected) + 1e-3 }).submit(
        request(prompt, router),
      ),
    )
    for (const [e, w] of soft.weights.entries()) expect(w).toBeCloseTo(expected[e] as number, 5)
  }, 30_000)

  it("scores a step's likelihood-routed prompts in one pass, each as it scores alone", async () => {
    const { graph, profile, T, engine } = await setup()
    const router: RowControls = { useRouter: 1 }
    const prompts = [
      'Subject: Re: apt-get fails on the new mirror',
      'It was a dark and stormy night; the rain fell in torrents, except',
      'Mary\nJohn\nAlice',
    ].map((t) => profile.encodePrompt(t))
    expect(new Set(prompts.map((p) => p.length)).size).toBe(3) // padding is exercised
    const e = engine(true, 10_000) // a prefill budget that takes all of them in one step
    // A first sequence keeps step 1 busy, so that the three wait together and step 2 prefills them all.
    const first = prompts[0] as number[]
    const got = await Promise.all(
      [first, ...prompts].map((p) => run(e.submit(request(p, router)))),
    ).then((all) => all.slice(1))
    expect(e.counters.likelihoodPasses).toBe(2)
    for (const [k, prompt] of prompts.entries()) {
      const nll = await Promise.all(
        Array.from({ length: T }, (_, x) => oneHotNll(graph, prompt, x)),
      )
      const z = nll.map((x) => Math.exp(-(x - Math.min(...nll)) / TAU))
      const expected = z.map((x) => x / z.reduce((a, b) => a + b, 0))
      for (const [x, w] of (got[k]?.weights ?? []).entries())
        expect(w).toBeCloseTo(expected[x] as number, 4)
    }
  }, 30_000)

  it("applies a request's exclude_experts, top_k and abstain_below as the graph applies them to its router", () => {
    const nll = [10, 12, 14, 30, 11] // softmax(−nll/2): expert 0 first, then 4, 1, 2
    const dense = likelihoodWeights(nll, 2)
    expect(dense.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6)
    expect([...dense].indexOf(Math.max(...dense))).toBe(0)
    const top2 = likelihoodWeights(nll, 2, { topK: 2 })
    expect([...top2].map((w) => w > 0)).toEqual([true, false, false, false, true])
    expect((top2[0] as number) / (top2[4] as number)).toBeCloseTo(Math.exp(0.5), 5)
    const masked = likelihoodWeights(nll, 2, { expertMask: [0, 1, 1, 1, 1], topK: 1 })
    expect([...masked]).toEqual([0, 0, 0, 0, 1])
    // Expert 0's share is 1/(1 + e^−0.5 + e^−1 + e^−2 + e^−10) ≈ 0.47: below 0.5 abstains (the shared model).
    expect([...likelihoodWeights(nll, 2, { abstainBelow: 0.5 })]).toEqual([0, 0, 0, 0, 0])
    expect(likelihoodWeights(nll, 2, { abstainBelow: 0.4 })).toEqual(dense)
  })

  it('scores prompts of lengths far apart in separate passes, padding each at most 1.25× its real tokens', () => {
    // The held-out prompts' lengths at concurrency 32 (14 to 46 tokens): one pass was half padding.
    const lengths = [44, 24, 21, 20, 20, 17, 21, 14, 23, 19, 17, 31, 19, 15, 36, 17, 18, 14, 23, 35]
    const groups = lengthGroups(lengths)
    expect(groups.flat().sort((a, b) => a - b)).toEqual(lengths.map((_, i) => i))
    expect(groups.length).toBeGreaterThan(1)
    for (const g of groups) {
      const n = g.map((i) => lengths[i] as number)
      expect(g.length * Math.max(...n)).toBeLessThanOrEqual(1.25 * n.reduce((a, b) => a + b, 0))
    }
    const padded = groups.reduce(
      (sum, g) => sum + g.length * Math.max(...g.map((i) => lengths[i] as number)),
      0,
    )
    expect(padded).toBeLessThan(lengths.length * 44 * 0.75)
    // Equal lengths: one pass.
    expect(lengthGroups([7, 7, 7])).toEqual([[0, 1, 2]])
  })
})
