/**
 * The generation engine on the LM zoo's real graphs (issue 14): its batched, left-padded, continuously batched
 * greedy decoding reproduces PyTorch's continuations (zoo/lm/fixtures/generation.json) on the plain base and
 * fortunes decoders; on the twin package, sequences with different mixes sharing steps get exactly what each
 * gets alone; seeded sampling repeats; cancellation and the KV budget free and refuse as they should.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AppError } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { loadPackage } from '../package/load-package.ts'
import { openSession } from '../runtime/ort-session.ts'
import { checkContract } from '../twin-contract/check-contract.ts'
import { DecoderGraph } from './decoder-graph.ts'
import {
  type EngineOptions,
  GenerationEngine,
  type GenerationEvent,
  type GenerationRequest,
} from './engine.ts'
import { LmProfile } from './lm-profile.ts'

const REPO = join(import.meta.dirname, '../../..')
const LM = join(REPO, 'zoo/lm')

interface Fixture {
  maxNewTokens: number
  prompts: { ids: number[] }[]
  models: Record<string, { prompt: number; greedyIds: number[]; stepOneLogits?: number[] }[]>
}
const fixture = JSON.parse(readFileSync(join(LM, 'fixtures/generation.json'), 'utf8')) as Fixture

const OPTIONS: EngineOptions = {
  maxContext: 256,
  maxSequences: 16,
  maxBytes: 64 * 1024 * 1024,
  prefillTokensPerStep: 24,
}

async function plainEngine(
  file: string,
  options: Partial<EngineOptions> = {},
): Promise<GenerationEngine> {
  const { session } = await openSession(join(LM, 'models', file), { provider: 'cpu', threads: 1 })
  return new GenerationEngine(new DecoderGraph(session, [], 0), { ...OPTIONS, ...options })
}

async function twinEngine(options: Partial<EngineOptions> = {}): Promise<GenerationEngine> {
  const pkg = await loadPackage(join(LM, 'package'))
  const { session } = await openSession(pkg.model, { provider: 'cpu', threads: 1 })
  const controls = checkContract(pkg.manifest, session, new Map())
  const profile = await LmProfile.load(join(LM, 'models'))
  return new GenerationEngine(new DecoderGraph(session, controls, pkg.manifest.experts.length), {
    ...OPTIONS,
    detokenizer: profile,
    ...options,
  })
}

interface Collected {
  ids: number[]
  text: string
  weights?: number[]
  reason?: string
  logprobs: number[]
}

async function collect(events: AsyncIterable<GenerationEvent>): Promise<Collected> {
  const got: Collected = { ids: [], text: '', logprobs: [] }
  for await (const e of events) {
    if (e.type === 'start' && e.expertWeights) got.weights = [...e.expertWeights]
    if (e.type === 'token') {
      got.ids.push(e.id)
      got.text += e.text
      if (e.logprob !== undefined) got.logprobs.push(e.logprob)
    }
    if (e.type === 'end') {
      got.text += e.text
      got.reason = e.reason
    }
    if (e.type === 'error') throw e.error
  }
  return got
}

const greedy = (
  promptIds: number[],
  maxTokens: number,
  extra: Partial<GenerationRequest> = {},
) => ({
  promptIds,
  maxTokens,
  sampling: { temperature: 0, topP: 1, topK: 0 },
  ...extra,
})

describe('GenerationEngine on the LM zoo', () => {
  for (const [model, file] of [
    ['base', 'base.onnx'],
    ['fortunes', 'experts/fortunes.onnx'],
  ] as const)
    it(`greedy decoding of every fixture prompt at once reproduces PyTorch's continuations (${model})`, async () => {
      const engine = await plainEngine(file)
      const expected = fixture.models[model] ?? []
      expect(expected.length).toBeGreaterThan(2)
      // Submitted together: prompts of different lengths are prefilled over several steps (24-token budget) and
      // join the running batch at different steps, left-padded against each other.
      const runs = expected.map((g) =>
        collect(engine.submit(greedy(fixture.prompts[g.prompt]?.ids ?? [], fixture.maxNewTokens))),
      )
      const got = await Promise.all(runs)
      expect(got.map((g) => g.ids)).toEqual(expected.map((g) => g.greedyIds))
      expect(got.every((g) => g.reason === 'length')).toBe(true)
      expect(engine.counters.decodeRows).toBeGreaterThan(engine.counters.decodePasses)
      // The batched past is rebuilt only when rows join or leave, not on every pass.
      expect(engine.counters.gathers).toBeLessThan(engine.counters.decodePasses)
      expect(engine.activeSequences).toBe(0)
      expect(engine.kvBytes).toBe(0)
    })

  it('a reused batched past gives the same tokens as one rebuilt every pass, with rows joining and leaving', async () => {
    const prompts = fixture.prompts.map((p) => p.ids)
    // Different lengths: rows leave the batch at different steps; a late submit joins it mid-way.
    const run = async (engine: GenerationEngine) => {
      const first = prompts.map((p, i) => collect(engine.submit(greedy(p, 6 + 5 * i))))
      await new Promise((resolve) => setTimeout(resolve, 5))
      const late = collect(engine.submit(greedy(prompts[0] ?? [], 9)))
      return (await Promise.all([...first, late])).map((g) => g.ids)
    }
    const reused = await plainEngine('base.onnx')
    const rebuilt = await plainEngine('base.onnx', { reuseBatch: false })
    const [a, b] = [await run(reused), await run(rebuilt)]
    expect(a).toEqual(b)
    expect(a.map((ids) => ids.length)).toEqual([...prompts.map((_, i) => 6 + 5 * i), 9])
    expect(rebuilt.counters.gathers).toBe(rebuilt.counters.decodePasses)
    expect(reused.counters.gathers).toBeLessThan(reused.counters.decodePasses / 2)
    expect(reused.kvBytes).toBe(0)
  })

  it('twin package: rows with different mixes sharing steps get what each gets alone', async () => {
    const engine = await twinEngine()
    const prompts = fixture.prompts.map((p) => p.ids)
    const mixes = [
      { mixWeights: [0, 0, 0, 1, 0] },
      {},
      { mixWeights: [0.5, 0.5, 0, 0, 0] },
      { useRouter: 1 },
    ]
    const alone: Collected[] = []
    for (const [i, p] of prompts.entries())
      alone.push(await collect(engine.submit(greedy(p, 12, { controls: mixes[i] ?? {} }))))
    const together = await Promise.all(
      prompts.map((p, i) => collect(engine.submit(greedy(p, 12, { controls: mixes[i] ?? {} })))),
    )
    expect(together.map((g) => g.ids)).toEqual(alone.map((g) => g.ids))
    // Different mixes really differ, and the router's mix is held from prefill (weights over the 5 experts).
    expect(new Set(alone.map((g) => g.ids.join())).size).toBeGreaterThan(1)
    expect(alone[0]?.weights).toEqual([0, 0, 0, 1, 0])
    expect(alone[1]?.weights).toEqual([0, 0, 0, 0, 0])
    const routed = alone[3]?.weights ?? []
    expect(routed).toHaveLength(5)
    expect(routed.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4)
  })

  it('seeded sampling repeats; another seed differs; logprobs are log-probabilities', async () => {
    const engine = await twinEngine()
    const ids = fixture.prompts[0]?.ids ?? []
    const sample = (seed: number) =>
      collect(
        engine.submit({
          promptIds: ids,
          maxTokens: 24,
          sampling: { temperature: 1, topP: 0.95, topK: 50, seed, logprobs: 2 },
        }),
      )
    const [a, b, c] = await Promise.all([sample(7), sample(7), sample(8)])
    expect(a?.ids).toEqual(b?.ids)
    expect(a?.text).toBe(b?.text)
    expect(a?.ids).not.toEqual(c?.ids)
    expect(a?.logprobs).toHaveLength(24)
    expect(a?.logprobs.every((x) => x <= 0 && Number.isFinite(x))).toBe(true)
  })

  it('a stop string ends the text before it, and frees the sequence at once', async () => {
    const engine = await twinEngine()
    const free = await collect(engine.submit(greedy(fixture.prompts[0]?.ids ?? [], 8)))
    // A stop string from the middle of the free continuation (it may straddle a token boundary).
    const stop = free.text.slice(6, 9)
    expect(stop).toHaveLength(3)
    const stopped = await collect(
      engine.submit(greedy(fixture.prompts[0]?.ids ?? [], 8, { stop: [stop] })),
    )
    expect(stopped.reason).toBe('stop')
    expect(stopped.text).toBe(free.text.slice(0, free.text.indexOf(stop)))
    expect(stopped.ids.length).toBeLessThan(8)
    expect(engine.kvBytes).toBe(0)
  })

  it('a stop token as the very first token ends the sequence with no text (it hung the request)', async () => {
    const engine = await twinEngine()
    const ids = fixture.prompts[0]?.ids ?? []
    const [first] = (await collect(engine.submit(greedy(ids, 1)))).ids
    expect(first).toBeDefined()
    // Nothing of the completion reaches the detokenizer: tokenizers.js refused to decode an empty list, and the
    // sequence was marked done before that throw, so its reader never heard the end.
    const stopped = await collect(engine.submit(greedy(ids, 8, { stopTokenIds: [first ?? -1] })))
    expect(stopped).toMatchObject({ ids: [], text: '', reason: 'stop' })
    expect(engine.activeSequences).toBe(0)
    expect(engine.kvBytes).toBe(0)
  })

  it('cancelling mid-generation frees the sequence and its KV bytes at the next step', async () => {
    const engine = await twinEngine()
    const abort = new AbortController()
    const events = engine.submit(
      greedy(fixture.prompts[1]?.ids ?? [], 200, { signal: abort.signal }),
    )
    const other = collect(engine.submit(greedy(fixture.prompts[2]?.ids ?? [], 40)))
    expect(engine.activeSequences).toBe(2)
    let tokens = 0
    let reason = ''
    for await (const e of events) {
      if (e.type === 'token' && ++tokens === 3) abort.abort()
      if (e.type === 'end') reason = e.reason
    }
    expect(reason).toBe('cancelled')
    expect(tokens).toBeLessThan(6)
    expect((await other).ids).toHaveLength(40)
    await engine.idle()
    expect(engine.activeSequences).toBe(0)
    expect(engine.kvBytes).toBe(0)
  })

  it('a reader that stops listening cancels its sequence', async () => {
    const engine = await twinEngine()
    for await (const e of engine.submit(greedy(fixture.prompts[0]?.ids ?? [], 100)))
      if (e.type === 'token') break
    await engine.idle()
    expect(engine.kvBytes).toBe(0)
  })

  it('refuses with 503 when the KV budget is full, and admits again once it is free', async () => {
    const engine = await twinEngine({ maxBytes: 3072 * 120 })
    const first = engine.submit(greedy(fixture.prompts[0]?.ids ?? [], 80))
    let refused: unknown
    try {
      engine.submit(greedy(fixture.prompts[1]?.ids ?? [], 80))
    } catch (err) {
      refused = err
    }
    expect(refused).toBeInstanceOf(AppError)
    expect((refused as AppError).code).toBe('RUNNER_OVERLOADED')
    expect((refused as AppError).status).toBe(503)
    expect((refused as AppError).retryAfter).toBeGreaterThan(0)
    await collect(first)
    expect(engine.kvBytes).toBe(0)
    expect(
      (await collect(engine.submit(greedy(fixture.prompts[1]?.ids ?? [], 80)))).ids,
    ).toHaveLength(80)
  })

  it('refuses a prompt over the context and max_tokens below 1 with 400s naming them', async () => {
    const engine = await twinEngine()
    expect(() => engine.submit(greedy(Array(250).fill(50), 10))).toThrow(
      /over the model's context of 256/,
    )
    expect(() => engine.submit(greedy([1, 50], 0))).toThrow(/max_tokens must be at least 1/)
    expect(engine.activeSequences).toBe(0)
  })
})
