/**
 * Generation over HTTP on a real runner (issue 14): `twinserve serve --package zoo/lm/package --generation
 * lm-twin=zoo/lm/models --insecure-local`, real onnxruntime. The OpenAI-compatible routes and Triton's generate
 * extension agree with each other, stream server-sent events in OpenAI's chunk format, name the applied expert
 * weights, refuse bad input with 4xx JSON naming the problem, refuse with 503 + Retry-After when the KV budget
 * is full, free a cancelled stream's sequence, and the official `openai` client streams a chat completion with a
 * mix in the body.
 */
import { join } from 'node:path'
import {
  ChatCompletionChunkSchema,
  ChatCompletionSchema,
  CompletionChunkSchema,
  CompletionSchema,
  ErrorBodySchema,
  GenerateResponseSchema,
  ModelListSchema,
} from '@twinserve/shared'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { withinStep } from '../../test-support/step-deadline.ts'
import { RunnerConfigSchema } from '../config.ts'
import { readPromptBag, sureExpert } from '../generate/prompt-bag.ts'
import {
  likelihoodWeights,
  promptEvidenceBatch,
  promptNlls,
} from '../generate/prompt-likelihood.ts'
import type { TextGenerator } from '../generate/text-generator.ts'
import { createLogger } from './logger.ts'
import { type Runner, startRunner } from './runner.ts'

const REPO = join(import.meta.dirname, '../../..')
const MODEL = 'lm-twin'
const FORTUNES = { emails: 0, speeches: 0, fiction: 0, fortunes: 1, names: 0 }

let runner: Runner
let gen: TextGenerator

beforeAll(async () => {
  runner = await startRunner(
    RunnerConfigSchema.parse({
      packages: [join(REPO, 'zoo/lm/package')],
      generation: [`${MODEL}=${join(REPO, 'zoo/lm/models')}`],
      // 1 MiB of KV cache: 341 positions of this model (3,072 bytes each), so a full budget is easy to reach.
      kvCacheMb: 1,
      port: 0,
      insecureLocal: true,
      provider: 'cpu',
      threads: 1,
      logLevel: 'error',
    }),
    { logger: createLogger({ level: 'error', sink: () => undefined }) },
  )
  const g = runner.generators.get(MODEL)
  if (!g) throw new Error('no generator')
  gen = g
})
afterAll(() => runner?.shutdown('test done'))

const post = (path: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${runner.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  })

/** The `data:` payloads of a server-sent event stream. */
async function sseData(res: Response): Promise<string[]> {
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
  const text = await res.text()
  expect(text.endsWith('\n\n')).toBe(true)
  return text
    .split('\n\n')
    .filter((e) => e.length > 0)
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true)
      return e.slice('data: '.length)
    })
}

const PROMPT = 'The proof of the pudding is in the eating.'

describe('generation routes on a real runner', () => {
  it('GET /v1/models lists the generating model', async () => {
    const res = await fetch(`${runner.url}/v1/models`)
    const body = ModelListSchema.parse(await res.json())
    expect(body.data.map((m) => m.id)).toEqual([MODEL])
  })

  it('completions, the same request streamed, and V2 generate agree; the applied mix comes back', async () => {
    const req = {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 12,
      temperature: 0,
      twinserve: { experts: FORTUNES },
    }
    const res = await post('/v1/completions', req)
    expect(res.status).toBe(200)
    const whole = CompletionSchema.parse(await res.json())
    const finish = whole.choices[0]?.finish_reason
    // 12 tokens, or fewer when the model ends the document (<|eos|>, counted as a completion token).
    expect(
      finish === 'length'
        ? whole.usage?.completion_tokens === 12
        : (whole.usage?.completion_tokens ?? 99) <= 12,
    ).toBe(true)
    expect(whole.usage?.prompt_tokens).toBe(gen.profile.encodePrompt(PROMPT).length)
    expect(whole.twinserve?.expert_weights).toEqual(FORTUNES)
    const text = whole.choices[0]?.text ?? ''
    expect(text.length).toBeGreaterThan(0)

    const data = await sseData(
      await post('/v1/completions', {
        ...req,
        stream: true,
        stream_options: { include_usage: true },
      }),
    )
    expect(data.at(-1)).toBe('[DONE]')
    const chunks = data.slice(0, -1).map((d) => CompletionChunkSchema.parse(JSON.parse(d)))
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(text)
    expect(chunks[0]?.twinserve?.expert_weights).toEqual(FORTUNES)
    expect(chunks.at(-2)?.choices[0]?.finish_reason).toBe(finish)
    expect(chunks.at(-1)?.usage).toEqual(whole.usage)

    const v2 = await post(`/v2/models/${MODEL}/generate`, {
      text_input: PROMPT,
      parameters: { max_tokens: 12, temperature: 0, experts: FORTUNES },
    })
    expect(v2.status).toBe(200)
    const g = GenerateResponseSchema.parse(await v2.json())
    expect(g.text_output).toBe(text)
    expect(g.expert_weights).toEqual(FORTUNES)
    const pieces = await sseData(
      await post(`/v2/models/${MODEL}/generate_stream`, {
        text_input: PROMPT,
        parameters: { max_tokens: 12, temperature: 0, experts: FORTUNES },
      }),
    )
    expect(
      pieces.map((p) => GenerateResponseSchema.parse(JSON.parse(p)).text_output).join(''),
    ).toBe(text)
  })

  it('the router picks the mix from the prompt (weights over the experts, summing to 1)', async () => {
    const res = await post('/v1/completions', {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 4,
      temperature: 0,
    })
    const w = CompletionSchema.parse(await res.json()).twinserve?.expert_weights ?? {}
    expect(Object.keys(w).sort()).toEqual(Object.keys(FORTUNES).sort())
    expect(Object.values(w).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4)
    // The LM package routes by the experts' likelihood of the prompt (its router.promptLikelihood, #14), unless its
    // bag-of-ids classifier is ≥ 0.9 sure of the prompt's domain (bench/RESULTS.md "LM bag-of-ids prompt classifier").
    const like = gen.model.manifest.router.promptLikelihood
    expect(like).toMatchObject({ temperature: 2, bag: { skipAbove: 0.9 } })
    const bag = like?.bag ? readPromptBag(like.bag, Object.keys(FORTUNES).length) : undefined
    // This proverb is not one it is sure of (speeches 0.58, fortunes 0.31): τ 2 and no lever (bench/RESULTS.md "LM
    // likelihood-routing levers"), so the sums' softmax is the whole formula.
    expect(bag && sureExpert(bag, gen.profile.encodePrompt(PROMPT), 0.9)).toBeUndefined()
    const nll = await promptNlls(gen.engine.graph, gen.profile.encodePrompt(PROMPT))
    const expected = gen.weightsByName(likelihoodWeights(nll, like?.temperature ?? 1))
    for (const [name, x] of Object.entries(expected)) expect(w[name]).toBeCloseTo(x, 5)
    // The runner scores prompts in the grouped likelihood graph it derived at load (likelihood-graph.ts, then
    // grouped-likelihood-graph.ts: 18 block matrices and the tied LM head); scored from the logits instead, the mix
    // is the same to 5 decimals.
    expect(gen.model.likelihoodScoring).toBe(
      'likelihood graph, grouped (19 corrections per expert)',
    )
    expect(gen.engine.graph.scorer).toBeDefined()
    expect(gen.engine.graph.scorerGrouped).toBe(true)
    const [fromLogits] = await promptEvidenceBatch(
      gen.engine.graph,
      [gen.profile.encodePrompt(PROMPT)],
      false,
      false,
    )
    const viaLogits = gen.weightsByName(
      likelihoodWeights(fromLogits?.nll ?? [], like?.temperature ?? 1),
    )
    for (const [name, x] of Object.entries(viaLogits)) expect(w[name]).toBeCloseTo(x, 5)
  })

  it('a prompt the bag-of-ids classifier is sure of goes to that expert alone, unscored', async () => {
    const scored = gen.engine.counters.likelihoodPasses
    const skipped = gen.engine.counters.bagSkipped
    const res = await post('/v1/completions', {
      model: MODEL,
      prompt: 'Logic is a pretty flower that smells bad.',
      max_tokens: 4,
      temperature: 0,
    })
    expect(CompletionSchema.parse(await res.json()).twinserve?.expert_weights).toEqual(FORTUNES)
    expect(gen.engine.counters.bagSkipped).toBe(skipped + 1)
    expect(gen.engine.counters.likelihoodPasses).toBe(scored)
  })

  it('chat: same seed, same text; stop strings end it; logprobs per token', async () => {
    const req = {
      model: MODEL,
      messages: [{ role: 'user', content: 'Scotty regarded the ear and the grizzled' }],
      max_tokens: 20,
      temperature: 0.9,
      seed: 42,
      logprobs: true,
      top_logprobs: 2,
      twinserve: { experts: { fiction: 1 } },
    }
    const a = ChatCompletionSchema.parse(await (await post('/v1/chat/completions', req)).json())
    const b = ChatCompletionSchema.parse(await (await post('/v1/chat/completions', req)).json())
    const text = a.choices[0]?.message.content ?? ''
    expect(text).toBe(b.choices[0]?.message.content)
    expect(a.twinserve?.expert_weights.fiction).toBe(1)
    const lp = a.choices[0]?.logprobs?.content ?? []
    expect(lp.length).toBeGreaterThan(0)
    expect(lp.every((t) => t.logprob <= 0 && t.top_logprobs.length === 2)).toBe(true)
    // A stop string taken from the middle of that text: the answer ends right before it.
    if (text.length >= 6) {
      const stop = text.slice(3, 6)
      const s = ChatCompletionSchema.parse(
        await (await post('/v1/chat/completions', { ...req, stop: [stop] })).json(),
      )
      expect(s.choices[0]?.message.content).toBe(text.slice(0, text.indexOf(stop)))
      expect(s.choices[0]?.finish_reason).toBe('stop')
    }
  })

  it('streams chat chunks in OpenAI’s format, ending with [DONE]', async () => {
    const data = await sseData(
      await post('/v1/chat/completions', {
        model: MODEL,
        messages: [{ role: 'user', content: 'Subject: meeting' }],
        max_tokens: 10,
        temperature: 0,
        stream: true,
      }),
    )
    expect(data.at(-1)).toBe('[DONE]')
    const chunks = data.slice(0, -1).map((d) => ChatCompletionChunkSchema.parse(JSON.parse(d)))
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant')
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)
    expect(['stop', 'length']).toContain(chunks.at(-1)?.choices[0]?.finish_reason)
  })

  it('refuses bad input with 4xx JSON naming the problem, and leaks nothing', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ model: MODEL, prompt: 'word '.repeat(300) }, 400, /over the context limit/],
      [{ model: MODEL, prompt: PROMPT, max_tokens: 250 }, 400, /over the model's context of 256/],
      [{ model: MODEL, prompt: PROMPT, max_tokens: 0 }, 400, /max_tokens: must be at least 1/],
      [{ model: MODEL, prompt: PROMPT, max_tokens: -3 }, 400, /max_tokens/],
      [
        { model: MODEL, prompt: PROMPT, twinserve: { experts: { poetry: 1 } } },
        404,
        /no expert 'poetry'/,
      ],
      [
        { model: MODEL, prompt: PROMPT, twinserve: { topk: 2 } },
        400,
        /unknown merge control 'topk'/,
      ],
      [{ model: MODEL, prompt: PROMPT, max_tokenz: 3 }, 400, /max_tokenz/],
      [{ model: MODEL, prompt: PROMPT, presence_penalty: 2.5 }, 400, /presence_penalty/],
      [{ model: MODEL, prompt: PROMPT, repetition_penalty: 0 }, 400, /repetition_penalty/],
      [{ model: MODEL, prompt: PROMPT, logit_bias: { '5': 101 } }, 400, /logit_bias/],
      [{ model: MODEL, prompt: PROMPT, logit_bias: { x: 1 } }, 400, /logit_bias/],
      [
        { model: MODEL, prompt: PROMPT, logit_bias: { '2048': 1 } },
        400,
        /token id 2048 is not in the model's vocabulary \(ids 0 to 2047\)/,
      ],
      [{ model: 'nope', prompt: PROMPT }, 404, /not served here/],
    ]
    for (const [body, status, message] of cases) {
      const res = await post('/v1/completions', body)
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(status)
      const err = ErrorBodySchema.parse(await res.json())
      expect(err.error).toMatch(message)
    }
    expect(gen.engine.activeSequences).toBe(0)
    expect(gen.engine.kvBytes).toBe(0)
  })

  it('penalties and logit bias reach the sampler from /v1 and V2 generate: fewer repeats, the same text both ways', async () => {
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 40, temperature: 0 }
    const completion = async (extra: Record<string, number>, bias?: Record<string, number>) => {
      const res = await post('/v1/completions', {
        ...body,
        ...extra,
        logprobs: 0,
        ...(bias ? { logit_bias: bias } : {}),
      })
      expect(res.status).toBe(200)
      const c = CompletionSchema.parse(await res.json())
      return { text: c.choices[0]?.text ?? '', tokens: c.choices[0]?.logprobs?.tokens ?? [] }
    }
    /** How often the most repeated token occurs. */
    const most = (tokens: readonly string[]) => {
      const counts = new Map<string, number>()
      for (const t of tokens) counts.set(t, (counts.get(t) ?? 0) + 1)
      return Math.max(...counts.values())
    }
    const plain = await completion({})
    const penalised = await completion({ frequency_penalty: 2, presence_penalty: 1 })
    const repetition = await completion({ repetition_penalty: 1.8 })
    expect(penalised.text).not.toBe(plain.text)
    expect(repetition.text).not.toBe(plain.text)
    // Greedy on this small model repeats itself; the penalties spread the tokens out.
    expect(most(penalised.tokens)).toBeLessThan(most(plain.tokens))
    // Logit bias: the first greedy token banned, the completion starts otherwise; forced, every token is it.
    const first = plain.tokens[0] ?? ''
    const id = Array.from({ length: 2048 }, (_, i) => i).find(
      (i) => gen.profile.tokenText(i) === first,
    )
    if (id === undefined) throw new Error(`no id for the first token ${JSON.stringify(first)}`)
    const banned = await completion({}, { [String(id)]: -100 })
    expect(banned.tokens[0]).not.toBe(first)
    const forced = await completion({}, { [String(id)]: 100 })
    expect(new Set(forced.tokens)).toEqual(new Set([first]))
    const v2 = await post(`/v2/models/${MODEL}/generate`, {
      text_input: PROMPT,
      parameters: { max_tokens: 40, temperature: 0, frequency_penalty: 2, presence_penalty: 1 },
    })
    expect(GenerateResponseSchema.parse(await v2.json()).text_output).toBe(penalised.text)
  })

  it('ignore_eos runs past the end token to max_tokens; min_tokens holds it back that long', async () => {
    const body = {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 60,
      temperature: 0,
      twinserve: { experts: FORTUNES },
    }
    const run = async (extra: Record<string, unknown>) => {
      const res = await post('/v1/completions', { ...body, ...extra })
      expect(res.status).toBe(200)
      const c = CompletionSchema.parse(await res.json())
      return { reason: c.choices[0]?.finish_reason, tokens: c.usage?.completion_tokens ?? 0 }
    }
    // Greedy under this mix ends early at the model's end token.
    const plain = await run({})
    expect(plain.reason).toBe('stop')
    expect(plain.tokens).toBeLessThan(60)
    expect(await run({ ignore_eos: true })).toEqual({ reason: 'length', tokens: 60 })
    const held = await run({ min_tokens: plain.tokens + 5 })
    expect(held.tokens).toBeGreaterThanOrEqual(plain.tokens + 5)
    const bad = await post('/v1/completions', { ...body, max_tokens: 5, min_tokens: 6 })
    expect(bad.status).toBe(400)
    expect(ErrorBodySchema.parse(await bad.json()).error).toMatch(
      /min_tokens \(6\) is more than max_tokens \(5\)/,
    )
  })

  it('n choices: each its own sequence (seed + i), streamed interleaved by index, usage counting the prompt once', async () => {
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0.9, seed: 7 }
    const res = await post('/v1/completions', { ...body, n: 3 })
    expect(res.status).toBe(200)
    const many = CompletionSchema.parse(await res.json())
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2])
    // Choice i is what one choice with seed 7 + i gives; the usage counts the prompt once and every choice's tokens.
    let completionTokens = 0
    for (const [i, choice] of many.choices.entries()) {
      const one = CompletionSchema.parse(
        await (await post('/v1/completions', { ...body, seed: 7 + i })).json(),
      )
      expect(choice.text).toBe(one.choices[0]?.text)
      expect(choice.finish_reason).toBe(one.choices[0]?.finish_reason)
      expect(many.usage?.prompt_tokens).toBe(one.usage?.prompt_tokens)
      completionTokens += one.usage?.completion_tokens ?? 0
    }
    expect(many.usage?.completion_tokens).toBe(completionTokens)
    expect(new Set(many.choices.map((c) => c.text)).size).toBeGreaterThan(1)

    // Chat, streamed: both choices' chunks come, each index ends once, the usage chunk sums them, one [DONE].
    const chat = {
      model: MODEL,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 10,
      temperature: 0.9,
      seed: 3,
      n: 2,
    }
    const whole = ChatCompletionSchema.parse(
      await (await post('/v1/chat/completions', chat)).json(),
    )
    const data = await sseData(
      await post('/v1/chat/completions', {
        ...chat,
        stream: true,
        stream_options: { include_usage: true },
      }),
    )
    expect(data.filter((d) => d === '[DONE]')).toEqual(['[DONE]'])
    expect(data.at(-1)).toBe('[DONE]')
    const chunks = data.slice(0, -1).map((d) => ChatCompletionChunkSchema.parse(JSON.parse(d)))
    const usage = chunks.at(-1)?.usage
    expect(usage).toEqual(whole.usage)
    for (const index of [0, 1]) {
      const mine = chunks.filter((c) => c.choices[0]?.index === index)
      expect(mine.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe(
        whole.choices[index]?.message.content,
      )
      expect(mine.filter((c) => c.choices[0]?.finish_reason).length).toBe(1)
    }
    expect(gen.engine.activeSequences).toBe(0)
  })

  it('n choices are admitted all or none: a second choice past the KV budget refuses the request and frees the first', async () => {
    // 1 MiB holds 341 positions of this model: one choice of 200 tokens fits, two do not.
    const res = await post('/v1/completions', {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 200,
      n: 2,
    })
    expect(res.status).toBe(503)
    expect(ErrorBodySchema.parse(await res.json()).code).toBe('RUNNER_OVERLOADED')
    await withinStep('the first choice is freed', 5000, () => gen.engine.idle())
    expect(gen.engine.kvBytes).toBe(0)
    const bad = await post('/v1/completions', { model: MODEL, prompt: PROMPT, n: 9 })
    expect(bad.status).toBe(400)
    expect(ErrorBodySchema.parse(await bad.json()).error).toMatch(/n: must be between 1 and 8/)
  })

  it('503 + Retry-After while the KV budget is full; a cancelled stream frees its sequence', async () => {
    // Every network step has a deadline that names it: a hang fails as that step, not as the test's timeout.
    const STEP_MS = 20_000
    const abort = new AbortController()
    const long = await withinStep('the 230-token stream answers', STEP_MS, (step) =>
      post(
        '/v1/completions',
        { model: MODEL, prompt: PROMPT, max_tokens: 230, temperature: 0.8, seed: 1, stream: true },
        AbortSignal.any([abort.signal, step]),
      ),
    )
    try {
      expect(long.status).toBe(200)
      const reader = long.body?.getReader()
      if (!reader) throw new Error('the stream has no body')
      // The first chunk: the sequence is running.
      await withinStep('the first chunk of the 230-token stream', STEP_MS, () => reader.read())
      const steps = gen.engine.counters.decodeRows
      expect(gen.engine.activeSequences).toBe(1)
      expect(gen.engine.kvBytes).toBeGreaterThan(0)

      const refused = await withinStep(
        'the request refused while the budget is full',
        STEP_MS,
        (s) => post('/v1/completions', { model: MODEL, prompt: PROMPT, max_tokens: 100 }, s),
      )
      expect(refused.status).toBe(503)
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(ErrorBodySchema.parse(await refused.json()).code).toBe('RUNNER_OVERLOADED')

      abort.abort() // the client goes away mid-stream (its body reader still locked)
      await withinStep('the aborted stream’s sequence is freed', 5000, () => gen.engine.idle())
      expect(gen.engine.kvBytes).toBe(0)
      // Freed by the cancel, not by running to its end: far fewer than 230 tokens were decoded.
      expect(gen.engine.counters.decodeRows - steps).toBeLessThan(150)
    } finally {
      abort.abort()
    }

    // Admitted again once freed: the same request that was refused starts (200, first chunk), streamed so the test
    // need not decode its 100 tokens; the client then cancels its body reader, the other way of going away.
    const again = await withinStep('the refused request, sent again', STEP_MS, (s) =>
      post('/v1/completions', { model: MODEL, prompt: PROMPT, max_tokens: 100, stream: true }, s),
    )
    expect(again.status).toBe(200)
    const reader = again.body?.getReader()
    if (!reader) throw new Error('the stream has no body')
    await withinStep('the first chunk of the admitted stream', STEP_MS, () => reader.read())
    await reader.cancel()
    await withinStep('the cancelled reader’s sequence is freed', 5000, () => gen.engine.idle())
    expect(gen.engine.kvBytes).toBe(0)
  })

  it('/metrics counts generation: tokens, how sequences end, TTFT, time per token, decode passes by path', async () => {
    const scrape = async () => (await fetch(`${runner.url}/metrics`)).text()
    const value = (text: string, series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `))
      return line ? Number(line.slice(series.length + 1)) : 0
    }
    const m = `model="${MODEL}"`
    const series = [
      `twinserve_runner_generation_prompt_tokens_total{${m}}`,
      `twinserve_runner_generation_completion_tokens_total{${m}}`,
      `twinserve_runner_generation_finished_total{${m},reason="stop"}`,
      `twinserve_runner_generation_finished_total{${m},reason="length"}`,
      `twinserve_runner_generation_finished_total{${m},reason="cancelled"}`,
      `twinserve_runner_generation_time_to_first_token_seconds_count{${m}}`,
      `twinserve_runner_generation_time_per_output_token_seconds_count{${m}}`,
      ...['factored', 'merged', 'baked'].map(
        (p) => `twinserve_runner_generation_decode_passes_total{${m},path="${p}"}`,
      ),
    ]
    const before = await scrape()
    const res = await post('/v1/completions', {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 20,
      temperature: 0,
      twinserve: { experts: FORTUNES },
    })
    const body = CompletionSchema.parse(await res.json())
    const after = await scrape()
    const [prompt, completion, stop, length, cancelled, ttft, tpot, ...passes] = series.map(
      (name) => value(after, name) - value(before, name),
    )
    const usage = body.usage
    const reason = body.choices[0]?.finish_reason
    if (!usage || (reason !== 'stop' && reason !== 'length')) throw new Error('no usage or reason')
    expect(usage.completion_tokens).toBeGreaterThan(1)
    expect({ prompt, completion, stop, length, cancelled, ttft, tpot }).toEqual({
      prompt: usage.prompt_tokens,
      completion: usage.completion_tokens,
      stop: reason === 'stop' ? 1 : 0,
      length: reason === 'length' ? 1 : 0,
      cancelled: 0,
      ttft: 1,
      tpot: 1,
    })
    // The first token comes from the prefill, each later one from a decode pass, on whichever path the mix took
    // (a sequence alone: merged, or baked).
    expect(passes.reduce((a, b) => a + (b ?? 0), 0)).toBe(usage.completion_tokens - 1)
    expect(value(after, `twinserve_runner_generation_sequences{${m},state="running"}`)).toBe(0)
    expect(value(after, `twinserve_runner_generation_kv_cache_bytes{${m}}`)).toBe(0)
    expect(value(after, `twinserve_runner_generation_kv_cache_capacity_bytes{${m}}`)).toBe(2 ** 20)
    // The cancelled streams of the test before were counted as such.
    expect(
      value(after, `twinserve_runner_generation_finished_total{${m},reason="cancelled"}`),
    ).toBeGreaterThan(0)
  })

  it('the official openai client streams a chat completion with a mix in the body', async () => {
    const client = new OpenAI({ baseURL: `${runner.url}/v1`, apiKey: 'any-string' })
    const params = {
      model: MODEL,
      messages: [{ role: 'user' as const, content: 'The proof of the pudding' }],
      max_tokens: 16,
      temperature: 0,
      stream: true as const,
      stream_options: { include_usage: true },
      twinserve: { experts: { fortunes: 0.7, emails: 0.3 } },
    }
    const stream = await client.chat.completions.create(params)
    let text = ''
    let finish: string | null | undefined
    let weights: unknown
    let usage: unknown
    for await (const chunk of stream) {
      weights ??= (chunk as { twinserve?: { expert_weights: unknown } }).twinserve?.expert_weights
      text += chunk.choices[0]?.delta.content ?? ''
      finish ??= chunk.choices[0]?.finish_reason
      usage ??= chunk.usage
    }
    expect(weights).toMatchObject({
      fortunes: expect.closeTo(0.7, 5),
      emails: expect.closeTo(0.3, 5),
    })
    expect(['stop', 'length']).toContain(finish)
    expect(usage).toMatchObject({ prompt_tokens: expect.any(Number) })
    // Non-streamed with the same body: the same text (greedy).
    const whole = await client.chat.completions.create({ ...params, stream: false })
    expect(whole.choices[0]?.message.content).toBe(text)
    // The client's own fields for choices and penalties: two sampled choices, each a finished message.
    const two = await client.chat.completions.create({
      ...params,
      stream: false,
      n: 2,
      seed: 5,
      temperature: 0.9,
      frequency_penalty: 1,
      presence_penalty: 0.5,
    })
    expect(two.choices.map((c) => c.index)).toEqual([0, 1])
    for (const c of two.choices) expect(['stop', 'length']).toContain(c.finish_reason)
    expect(two.usage?.prompt_tokens).toBe(whole.usage?.prompt_tokens)
    expect(gen.engine.kvBytes).toBe(0)
  })
})

describe('generation routes without --insecure-local', () => {
  it('are signed like /v2: an unsigned call is refused before any generation', async () => {
    const signed = await startRunner(
      RunnerConfigSchema.parse({
        packages: [join(REPO, 'zoo/lm/package')],
        generation: [`${MODEL}=${join(REPO, 'zoo/lm/models')}`],
        signingSecret: 'a-long-enough-test-secret',
        port: 0,
        provider: 'cpu',
        threads: 1,
        logLevel: 'error',
      }),
      { logger: createLogger({ level: 'error', sink: () => undefined }) },
    )
    try {
      for (const [method, path] of [
        ['GET', '/v1/models'],
        ['POST', '/v1/completions'],
        ['POST', '/v1/chat/completions'],
        ['POST', `/v2/models/${MODEL}/generate`],
      ] as const) {
        const res = await fetch(`${signed.url}${path}`, {
          method,
          ...(method === 'POST'
            ? {
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ model: MODEL, prompt: 'x' }),
              }
            : {}),
        })
        expect(res.status, path).toBe(401)
        expect(ErrorBodySchema.parse(await res.json()).code).toBe('UNAUTHENTICATED')
      }
      expect(signed.generators.get(MODEL)?.engine.counters.steps).toBe(0)
    } finally {
      await signed.shutdown('test done')
    }
  })
})
