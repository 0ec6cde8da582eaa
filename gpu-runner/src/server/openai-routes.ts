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
 * token (a stop token included); a stream carries it in a last chunk when `stream_options.include_usage`.
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
import type { GenerationEvent } from '../generate/engine.ts'
import type { TokenChoice } from '../generate/sampler.ts'
import type { TextGenerator } from '../generate/text-generator.ts'
import type { AppDeps } from './app-deps.ts'
import { collectRun, engineRequest, usageOf } from './generation-run.ts'
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

async function* completionStream(
  gen: TextGenerator,
  events: AsyncIterable<GenerationEvent>,
  id: string,
  includeUsage: boolean,
  logprobs: boolean,
): AsyncGenerator<string> {
  const created = now()
  const chunk = (
    text: string,
    finish: 'stop' | 'length' | null,
    lp: CompletionChunk['choices'][number]['logprobs'] = null,
  ): CompletionChunk => ({
    id,
    object: 'text_completion',
    created,
    model: gen.name,
    choices: [{ index: 0, text, logprobs: lp, finish_reason: finish }],
  })
  let prompt = 0
  let offset = 0
  try {
    for await (const e of events) {
      if (e.type === 'start') {
        prompt = e.promptTokens
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
        return
      } else {
        if (e.reason === 'cancelled') return
        yield JSON.stringify(chunk(e.text, e.reason))
        if (includeUsage)
          yield JSON.stringify({
            ...chunk('', null),
            choices: [],
            usage: usageOf(prompt, e.completionTokens),
          })
      }
    }
    yield '[DONE]'
  } catch (err) {
    yield streamError(err)
  }
}

async function* chatStream(
  gen: TextGenerator,
  events: AsyncIterable<GenerationEvent>,
  id: string,
  includeUsage: boolean,
  logprobs: boolean,
): AsyncGenerator<string> {
  const created = now()
  const chunk = (
    delta: ChatCompletionChunk['choices'][number]['delta'],
    finish: 'stop' | 'length' | null,
    lp: ChatLogprobs | null = null,
  ): ChatCompletionChunk => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model: gen.name,
    choices: [{ index: 0, delta, logprobs: lp, finish_reason: finish }],
  })
  let prompt = 0
  try {
    for await (const e of events) {
      if (e.type === 'start') {
        prompt = e.promptTokens
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
        return
      } else {
        if (e.reason === 'cancelled') return
        if (e.text) yield JSON.stringify(chunk({ content: e.text }, null))
        yield JSON.stringify(chunk({}, e.reason))
        if (includeUsage)
          yield JSON.stringify({
            ...chunk({}, null),
            choices: [],
            usage: usageOf(prompt, e.completionTokens),
          })
      }
    }
    yield '[DONE]'
  } catch (err) {
    yield streamError(err)
  }
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
    const events = gen.start(
      engineRequest(gen, gen.profile.encodePrompt(prompt), body, {
        defaultMaxTokens: 16,
        logprobs,
        controls: body.twinserve,
        signal: c.req.raw.signal,
      }),
    )
    const id = `cmpl-${c.get('requestId')}`
    if (body.stream)
      return sseResponse(
        completionStream(
          gen,
          events,
          id,
          body.stream_options?.include_usage ?? false,
          logprobs !== undefined,
        ),
      )
    const run = await collectRun(gen, events)
    let offset = 0
    const lp =
      logprobs === undefined
        ? null
        : run.tokens.reduce<NonNullable<Completion['choices'][number]['logprobs']>>(
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
    const answer: Completion = {
      id,
      object: 'text_completion',
      created: now(),
      model: gen.name,
      choices: [{ index: 0, text: run.text, logprobs: lp, finish_reason: run.finishReason }],
      usage: usageOf(run.promptTokens, run.completionTokens),
      twinserve: { expert_weights: run.expertWeights },
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
    const events = gen.start(
      engineRequest(
        gen,
        ids,
        { ...body, max_tokens: body.max_completion_tokens ?? body.max_tokens },
        {
          // A chat turn runs to its end token or the context, as OpenAI's chat default does.
          defaultMaxTokens: Number.POSITIVE_INFINITY,
          logprobs,
          controls: body.twinserve,
          signal: c.req.raw.signal,
        },
      ),
    )
    const id = `chatcmpl-${c.get('requestId')}`
    if (body.stream)
      return sseResponse(
        chatStream(
          gen,
          events,
          id,
          body.stream_options?.include_usage ?? false,
          logprobs !== undefined,
        ),
      )
    const run = await collectRun(gen, events)
    const answer: ChatCompletion = {
      id,
      object: 'chat.completion',
      created: now(),
      model: gen.name,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: run.text },
          logprobs:
            logprobs === undefined ? null : { content: run.tokens.map((t) => chatLogprob(gen, t)) },
          finish_reason: run.finishReason,
        },
      ],
      usage: usageOf(run.promptTokens, run.completionTokens),
      twinserve: { expert_weights: run.expertWeights },
    }
    return c.json(answer)
  })
}
