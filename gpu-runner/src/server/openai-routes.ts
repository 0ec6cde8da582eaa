/**
 * OpenAI-compatible generation on the runner (issue 14), for decoder packages served with `--generation`:
 *
 *   GET  /v1/models            → {object: 'list', data: [{id, object: 'model', created, owned_by}]}
 *   POST /v1/completions       → text_completion (or `stream: true`: server-sent chunks, then `data: [DONE]`)
 *   POST /v1/chat/completions  → chat.completion (or chat.completion.chunk events, then `data: [DONE]`)
 *
 * Bodies are shared/src/schemas/openai.ts. Merge controls travel in `twinserve` (those of a V2 request's
 * `parameters`: `experts`, `top_k`, `exclude_experts`, `abstain_below`, `variant: "shared"`); every answer names
 * the weights the sequence applied in `twinserve.expert_weights` (a stream: in its first chunk). The chat
 * template is the package's profile's (generate/lm-profile.ts). `usage` counts prompt tokens and every sampled
 * token (a stop token included); a stream carries it in a last chunk when `stream_options.include_usage`. `n`
 * choices are n sequences of their own (seed + i each when a seed is given), admitted all or none; a stream
 * interleaves their chunks by `index`, and `usage` counts the prompt once and every choice's tokens.
 * @module
 */
import {
  AppError,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  type ChatLogprobs,
  type Completion,
  type CompletionChunk,
  type CompletionRequest,
  CompletionRequestSchema,
  type ModelList,
  parseJsonText,
  requireJsonContentType,
} from '@twinserve/shared'
import type { Context, Hono } from 'hono'
import type { GenerationEvent, GenerationRequest } from '../generate/engine.ts'
import type { TokenChoice } from '../generate/sampler.ts'
import type { TextGenerator } from '../generate/text-generator.ts'
import type { AppDeps } from './app-deps.ts'
import { type CollectedRun, collectRun, engineRequest, usageOf } from './generation-run.ts'
import { interleave } from './interleave.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'
import { sseResponse } from './sse.ts'

/** The generator a request's `model` names: 404 naming the models that generate. */
export function generatorOf(deps: AppDeps, name: string): TextGenerator {
  const g = deps.generators.get(name)
  if (g && !deps.ready())
    throw new AppError('RUNNER_OVERLOADED', 'the runner is draining; retry on another runner', {
      retryAfter: 1,
    })
  if (g) return g
  const names = [...deps.generators.keys()]
  throw new AppError(
    'NOT_FOUND',
    deps.models.has(name)
      ? `model '${name}' is served but does not generate text (start the runner with --generation ${name}=<tokenizer dir>)`
      : `model '${name}' is not served here; models that generate: ${names.join(', ') || '(none)'}`,
  )
}

function bodyOf<S extends Parameters<typeof parseJsonText>[1]>(
  c: Context<RunnerAppEnv>,
  schema: S,
  what: string,
) {
  requireJsonContentType(c.req.header('content-type'))
  return parseJsonText(new TextDecoder().decode(c.get('body')), schema, what)
}

const now = () => Math.floor(Date.now() / 1000)

/** Completions' logprobs of one token: parallel arrays, the top tokens as {text: logprob}. */
function completionLogprobs(gen: TextGenerator, t: TokenChoice, offset: number) {
  return {
    tokens: [gen.profile.tokenText(t.id)],
    token_logprobs: [t.logprob ?? 0],
    top_logprobs: [
      Object.fromEntries((t.top ?? []).map((x) => [gen.profile.tokenText(x.id), x.logprob])),
    ],
    text_offset: [offset],
  }
}

function chatLogprob(gen: TextGenerator, t: TokenChoice): ChatLogprobs['content'][number] {
  const entry = (id: number, logprob: number) => {
    const token = gen.profile.tokenText(id)
    return { token, logprob, bytes: [...new TextEncoder().encode(token)] }
  }
  return {
    ...entry(t.id, t.logprob ?? 0),
    top_logprobs: (t.top ?? []).map((x) => entry(x.id, x.logprob)),
  }
}

/** Leaves the stream with an OpenAI-style error event when the run fails after the answer started. */
function streamError(err: unknown): string {
  const e = err instanceof AppError ? err : new AppError('INTERNAL', 'generation failed')
  return JSON.stringify({ error: { message: e.message, code: e.code, type: 'server_error' } })
}

/** What the choices of one answer add up to: the prompt (once) and every choice's sampled tokens. */
interface UsageTally {
  prompt: number
  completion: number
}

/** One choice's chunks; ends `true` when it finished, `false` when it failed (an error chunk went out) or was cancelled. */
async function* completionChoice(
  gen: TextGenerator,
  events: AsyncIterable<GenerationEvent>,
  base: { id: string; created: number; index: number; logprobs: boolean },
  usage: UsageTally,
): AsyncGenerator<string, boolean> {
  const { id, created, index, logprobs } = base
  const chunk = (
    text: string,
    finish: 'stop' | 'length' | null,
    lp: CompletionChunk['choices'][number]['logprobs'] = null,
  ): CompletionChunk => ({
    id,
    object: 'text_completion',
    created,
    model: gen.name,
    choices: [{ index, text, logprobs: lp, finish_reason: finish }],
  })
  let offset = 0
  for await (const e of events) {
    if (e.type === 'start') {
      usage.prompt = e.promptTokens
      yield JSON.stringify({
        ...chunk('', null),
        twinserve: { expert_weights: gen.weightsByName(e.expertWeights) },
      })
    } else if (e.type === 'token') {
      if (e.text || logprobs)
        yield JSON.stringify(
          chunk(e.text, null, logprobs ? completionLogprobs(gen, e, offset) : null),
        )
      offset += e.text.length
    } else if (e.type === 'error') {
      yield streamError(e.error)
      return false
    } else {
      if (e.reason === 'cancelled') return false
      usage.completion += e.completionTokens
      yield JSON.stringify(chunk(e.text, e.reason))
    }
  }
  return true
}

async function* chatChoice(
  gen: TextGenerator,
  events: AsyncIterable<GenerationEvent>,
  base: { id: string; created: number; index: number; logprobs: boolean },
  usage: UsageTally,
): AsyncGenerator<string, boolean> {
  const { id, created, index, logprobs } = base
  const chunk = (
    delta: ChatCompletionChunk['choices'][number]['delta'],
    finish: 'stop' | 'length' | null,
    lp: ChatLogprobs | null = null,
  ): ChatCompletionChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model: gen.name,
    choices: [{ index, delta, logprobs: lp, finish_reason: finish }],
  })
  for await (const e of events) {
    if (e.type === 'start') {
      usage.prompt = e.promptTokens
      yield JSON.stringify({
        ...chunk({ role: 'assistant', content: '' }, null),
        twinserve: { expert_weights: gen.weightsByName(e.expertWeights) },
      })
    } else if (e.type === 'token') {
      if (e.text || logprobs)
        yield JSON.stringify(
          chunk({ content: e.text }, null, logprobs ? { content: [chatLogprob(gen, e)] } : null),
        )
    } else if (e.type === 'error') {
      yield streamError(e.error)
      return false
    } else {
      if (e.reason === 'cancelled') return false
      usage.completion += e.completionTokens
      if (e.text) yield JSON.stringify(chunk({ content: e.text }, null))
      yield JSON.stringify(chunk({}, e.reason))
    }
  }
  return true
}

/**
 * The answer's events: every choice's chunks as they come (interleave.ts), then the usage chunk when asked for
 * (prompt once, the choices' tokens summed) and `[DONE]`; a choice that fails or is cancelled ends the stream there.
 */
async function* choiceStream(
  object: 'text_completion' | 'chat.completion.chunk',
  gen: TextGenerator,
  choice: typeof completionChoice,
  choices: readonly AsyncIterable<GenerationEvent>[],
  base: { id: string; logprobs: boolean },
  includeUsage: boolean,
): AsyncGenerator<string> {
  const { id } = base
  const created = now()
  const usage: UsageTally = { prompt: 0, completion: 0 }
  try {
    const streams = choices.map((events, index) =>
      choice(gen, events, { ...base, created, index }, usage),
    )
    if (!(yield* interleave(streams))) return
    if (includeUsage)
      yield JSON.stringify({
        id,
        object,
        created,
        model: gen.name,
        choices: [],
        usage: usageOf(usage.prompt, usage.completion),
      })
    yield '[DONE]'
  } catch (err) {
    yield streamError(err)
  }
}

/**
 * Starts the request's `n` choices, each a sequence of its own: choice i samples with seed + i when a seed is given,
 * so the answer is reproducible and its choices differ. Admission is all or nothing: when a choice is refused (the
 * KV budget), those already admitted are cancelled (freed at the engine's next step) and the refusal is thrown.
 * `abort` cancels them all (an answer that failed part way).
 */
function startChoices(
  gen: TextGenerator,
  n: number,
  request: (signal: AbortSignal) => GenerationRequest,
  clientSignal: AbortSignal,
): { events: AsyncIterable<GenerationEvent>[]; abort: () => void } {
  const group = new AbortController()
  const first = request(AbortSignal.any([clientSignal, group.signal]))
  const seed = first.sampling.seed
  const events: AsyncIterable<GenerationEvent>[] = []
  try {
    for (let i = 0; i < n; i++)
      events.push(
        gen.start(
          i === 0 || seed === undefined
            ? first
            : { ...first, sampling: { ...first.sampling, seed: seed + i } },
        ),
      )
  } catch (err) {
    group.abort()
    throw err
  }
  return { events, abort: () => group.abort() }
}

/** Every choice run to its end; if one fails, the others are cancelled and the failure thrown. */
async function collectChoices(
  gen: TextGenerator,
  started: ReturnType<typeof startChoices>,
): Promise<CollectedRun[]> {
  try {
    return await Promise.all(started.events.map((e) => collectRun(gen, e)))
  } catch (err) {
    started.abort()
    throw err
  }
}

/** A whole completion's logprobs: parallel arrays over its tokens, text offsets into its text. */
function runLogprobs(gen: TextGenerator, run: CollectedRun) {
  let offset = 0
  return run.tokens.reduce<NonNullable<Completion['choices'][number]['logprobs']>>(
    (acc, t) => {
      const one = completionLogprobs(gen, t, offset)
      offset += t.text.length
      acc.tokens.push(...one.tokens)
      acc.token_logprobs.push(...one.token_logprobs)
      acc.top_logprobs.push(...one.top_logprobs)
      acc.text_offset.push(...one.text_offset)
      return acc
    },
    { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] },
  )
}

/** The answer's usage: its prompt once (every choice reads the same), every choice's tokens. */
function usageOfRuns(runs: readonly CollectedRun[]) {
  return usageOf(
    runs[0]?.promptTokens ?? 0,
    runs.reduce((a, r) => a + r.completionTokens, 0),
  )
}

function messageText(content: ChatCompletionRequest['messages'][number]['content']): string {
  return typeof content === 'string' ? content : content.map((p) => p.text).join('')
}

export function openaiRoutes(app: Hono<RunnerAppEnv>, deps: AppDeps): void {
  app.get('/v1/models', (c) => {
    const body: ModelList = {
      object: 'list',
      data: [...deps.generators.values()].map((g) => ({
        id: g.name,
        object: 'model',
        created: 0,
        owned_by: 'twinserve',
      })),
    }
    return c.json(body)
  })

  app.post('/v1/completions', async (c) => {
    const body: CompletionRequest = bodyOf(c, CompletionRequestSchema, 'invalid completion request')
    const gen = generatorOf(deps, body.model)
    const prompt = typeof body.prompt === 'string' ? body.prompt : (body.prompt[0] ?? '')
    const logprobs = body.logprobs ?? undefined
    const promptIds = gen.profile.encodePrompt(prompt)
    const started = startChoices(
      gen,
      body.n ?? 1,
      (signal) =>
        engineRequest(gen, promptIds, body, {
          defaultMaxTokens: 16,
          logprobs,
          controls: body.twinserve,
          signal,
        }),
      c.req.raw.signal,
    )
    const id = `cmpl-${c.get('requestId')}`
    if (body.stream)
      return sseResponse(
        choiceStream(
          'text_completion',
          gen,
          completionChoice,
          started.events,
          { id, logprobs: logprobs !== undefined },
          body.stream_options?.include_usage ?? false,
        ),
      )
    const runs = await collectChoices(gen, started)
    const answer: Completion = {
      id,
      object: 'text_completion',
      created: now(),
      model: gen.name,
      choices: runs.map((run, index) => ({
        index,
        text: run.text,
        logprobs: logprobs === undefined ? null : runLogprobs(gen, run),
        finish_reason: run.finishReason,
      })),
      usage: usageOfRuns(runs),
      twinserve: { expert_weights: runs[0]?.expertWeights ?? gen.weightsByName(undefined) },
    }
    return c.json(answer)
  })

  app.post('/v1/chat/completions', async (c) => {
    const body: ChatCompletionRequest = bodyOf(
      c,
      ChatCompletionRequestSchema,
      'invalid chat completion request',
    )
    const gen = generatorOf(deps, body.model)
    const ids = gen.profile.encodeChat(
      body.messages.map((m) => ({ role: m.role, content: messageText(m.content) })),
    )
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined
    const started = startChoices(
      gen,
      body.n ?? 1,
      (signal) =>
        engineRequest(
          gen,
          ids,
          { ...body, max_tokens: body.max_completion_tokens ?? body.max_tokens },
          {
            // A chat turn runs to its end token or the context, as OpenAI's chat default does.
            defaultMaxTokens: Number.POSITIVE_INFINITY,
            logprobs,
            controls: body.twinserve,
            signal,
          },
        ),
      c.req.raw.signal,
    )
    const id = `chatcmpl-${c.get('requestId')}`
    if (body.stream)
      return sseResponse(
        choiceStream(
          'chat.completion.chunk',
          gen,
          chatChoice,
          started.events,
          { id, logprobs: logprobs !== undefined },
          body.stream_options?.include_usage ?? false,
        ),
      )
    const runs = await collectChoices(gen, started)
    const answer: ChatCompletion = {
      id,
      object: 'chat.completion',
      created: now(),
      model: gen.name,
      choices: runs.map((run, index) => ({
        index,
        message: { role: 'assistant', content: run.text },
        logprobs:
          logprobs === undefined ? null : { content: run.tokens.map((t) => chatLogprob(gen, t)) },
        finish_reason: run.finishReason,
      })),
      usage: usageOfRuns(runs),
      twinserve: { expert_weights: runs[0]?.expertWeights ?? gen.weightsByName(undefined) },
    }
    return c.json(answer)
  })
}
