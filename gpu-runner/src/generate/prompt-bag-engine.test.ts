/**
 * The engine with a bag-of-ids prompt classifier (`promptLikelihood.bag`, issue 14) on the LM zoo's twin package,
 * real onnxruntime: a prompt the classifier is sure of is prefilled once under that expert's one-hot mix with no
 * scoring pass (the probe's "skip" arm, bench/quality/lm-bag-probe.ts), and decodes as that explicit mix does; a
 * prompt it is less sure of, or whose sure expert the request excludes, is scored and gets τ 2's mix.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LM_ZOO, lmTwinGraph } from '../../test-support/lm-zoo.ts'
import { weightsOf } from '../../test-support/same-routing.ts'
import type { RowControls } from '../twin-contract/encode-controls.ts'
import { GenerationEngine } from './engine.ts'
import { argmax, bagProbabilities, promptBagFile, trainPromptBag } from './prompt-bag.ts'
import type { PromptLikelihoodOptions } from './prompt-likelihood.ts'

const TAU = 2

async function setup() {
  const { pkg, graph, profile, T } = await lmTwinGraph()
  const names = pkg.manifest.experts.map((e) => e.name)
  // The package builder's training (build/pipeline/manifest.ts), on the routing data in file order.
  const examples = readFileSync(join(LM_ZOO, 'data/routing.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const r = JSON.parse(line) as { expert: string; inputs: { input_ids: number[] } }
      return { ids: r.inputs.input_ids, y: names.indexOf(r.expert) }
    })
  const bag = trainPromptBag(examples, T, { bigrams: 4096 }, { l2: 3e-5, steps: 500 })
  const engine = (likelihood: PromptLikelihoodOptions | undefined) =>
    new GenerationEngine(graph, {
      maxContext: 256,
      maxSequences: 4,
      maxBytes: 64 * 1024 * 1024,
      prefillTokensPerStep: 256,
      ...(likelihood ? { promptLikelihood: likelihood } : {}),
    })
  const withBag = (skipAbove: number) =>
    engine({ temperature: TAU, bag: { skipAbove, ...promptBagFile(bag) } })
  return { profile, T, bag, engine, withBag }
}

const request = (promptIds: number[], controls: RowControls) => ({
  promptIds,
  maxTokens: 6,
  sampling: { temperature: 0, topP: 1, topK: 0 },
  controls,
})

describe('prompt likelihood with a bag-of-ids classifier (skip)', () => {
  it('routes a prompt it is sure of to that expert alone, unscored, and scores the others as τ 2 does', async () => {
    const { profile, T, bag, engine, withBag } = await setup()
    const router: RowControls = { useRouter: 1 }
    const sure = profile.encodePrompt(
      'Subject: Re: meeting on Thursday\nHi all, please find attached',
    )
    const unsure = profile.encodePrompt('The proof of the pudding is in the eating')
    const pSure = bagProbabilities(bag, sure)
    const pUnsure = bagProbabilities(bag, unsure)
    const top = argmax(pSure)
    // θ between the two prompts' largest probabilities: the first skips, the second is scored.
    const theta = (Math.max(...pSure) + Math.max(...pUnsure)) / 2
    expect(Math.max(...pSure) - Math.max(...pUnsure)).toBeGreaterThan(0.05)

    const skip = withBag(theta)
    const got = await Promise.all(
      [sure, unsure].map((p) => weightsOf(skip.submit(request(p, router)))),
    )
    expect(skip.counters.bagSkipped).toBe(1)
    expect(skip.counters.likelihoodPasses).toBe(1)
    expect(got[0]?.weights).toEqual(Array.from({ length: T }, (_, e) => (e === top ? 1 : 0)))
    // The skipped prompt decodes as that explicit one-hot mix does.
    const mix = new Float32Array(T)
    mix[top] = 1
    const explicit = await weightsOf(engine(undefined).submit(request(sure, { mixWeights: mix })))
    expect(got[0]?.ids).toEqual(explicit.ids)
    // The scored one gets the likelihood's mix and tokens, as without the classifier.
    const plain = await weightsOf(engine({ temperature: TAU }).submit(request(unsure, router)))
    for (const [e, w] of (got[1]?.weights ?? []).entries())
      expect(w).toBeCloseTo(plain.weights[e] as number, 6)
    expect(got[1]?.ids).toEqual(plain.ids)
    expect(skip.kvBytes).toBe(0)
  }, 30_000)

  it("scores a sure prompt when the request's expert mask excludes the classifier's expert", async () => {
    const { profile, T, bag, withBag } = await setup()
    const sure = profile.encodePrompt(
      'Subject: Re: meeting on Thursday\nHi all, please find attached',
    )
    const top = argmax(bagProbabilities(bag, sure))
    const mask = new Float32Array(T).fill(1)
    mask[top] = 0
    const skip = withBag(0.01)
    const got = await weightsOf(skip.submit(request(sure, { useRouter: 1, expertMask: mask })))
    expect(skip.counters.bagSkipped).toBe(0)
    expect(skip.counters.likelihoodPasses).toBe(1)
    expect(got.weights[top]).toBe(0)
  }, 30_000)

  it('leaves an explicit mix and a one-token prompt alone', async () => {
    const { profile, T, withBag } = await setup()
    const skip = withBag(0.01)
    const mix = Array.from({ length: T }, (_, e) => (e === 1 ? 0.5 : e === 2 ? 0.5 : 0))
    const prompt = profile.encodePrompt('Subject: Re: meeting on Thursday')
    const got = await weightsOf(
      skip.submit(request(prompt, { mixWeights: Float32Array.from(mix) })),
    )
    expect(got.weights).toEqual(mix)
    await weightsOf(skip.submit(request(prompt.slice(0, 1), { useRouter: 1 })))
    expect(skip.counters.bagSkipped).toBe(0)
  }, 30_000)
})
