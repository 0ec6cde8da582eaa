/**
 * Triton's generate extension on the runner (issue 14): `POST /v2/models/{m}/generate` answers one JSON object,
 * `…/generate_stream` server-sent events, one per piece of text, as Triton serves them (no `[DONE]`: the
 * stream simply ends). The request's `text_input` is the prompt; in `parameters`, the sampling keys
 * (`max_tokens`, `temperature`, `top_p`, `top_k`, `stop`, `seed`) go to the sampler and every other key is a
 * merge control, as in a V2 infer request. Answers add `finish_reason`, `expert_weights` and `usage` (prompt and
 * completion tokens, as /v1 counts them; a stream: in its last event) to `text_output`.
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_generate.md
 * @module
 */
import {
  AppError,
  describeIssues,
  GENERATE_SAMPLING_KEYS,
  type GenerateRequest,
  GenerateRequestSchema,
  type GenerateResponse,
  GenerateSamplingSchema,
  parseJsonText,
  requireJsonContentType,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { GenerationEvent } from '../generate/engine.ts'
import type { TextGenerator } from '../generate/text-generator.ts'
import type { AppDeps } from './app-deps.ts'
import { collectRun, engineRequest, usageOf } from './generation-run.ts'
import { generatorOf } from './openai-routes.ts'
import type { RunnerAppEnv } from './runner-app-env.ts'
import { sseResponse } from './sse.ts'

function split(parameters: Record<string, unknown> | undefined) {
  const sampling: Record<string, unknown> = {}
  const controls: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(parameters ?? {}))
    (GENERATE_SAMPLING_KEYS.includes(k) ? sampling : controls)[k] = v
  const parsed = GenerateSamplingSchema.safeParse(sampling)
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', describeIssues(parsed.error, { root: 'parameters' }))
  return { sampling: parsed.data, controls }
}

async function* generateStream(
  gen: TextGenerator,
  events: AsyncIterable<GenerationEvent>,
  base: { model_name: string; model_version: string; id?: string },
): AsyncGenerator<string> {
  let weights: Record<string, number> = {}
  let prompt = 0
  try {
    for await (const e of events) {
      if (e.type === 'start') {
        weights = gen.weightsByName(e.expertWeights)
        prompt = e.promptTokens
      } else if (e.type === 'token') {
        if (e.text) yield JSON.stringify({ ...base, text_output: e.text })
      } else if (e.type === 'error') {
        yield JSON.stringify({ error: e.error.message })
        return
      } else if (e.reason !== 'cancelled')
        yield JSON.stringify({
          ...base,
          text_output: e.text,
          finish_reason: e.reason,
          expert_weights: weights,
          usage: usageOf(prompt, e.completionTokens),
        } satisfies GenerateResponse)
    }
  } catch (err) {
    yield JSON.stringify({ error: err instanceof AppError ? err.message : 'generation failed' })
  }
}

/** The generate (or generate_stream) handler of `/v2/models/{model}[/versions/{v}]`. */
export function generateHandler(deps: AppDeps, stream: boolean) {
  return async function generate(c: Context<RunnerAppEnv>): Promise<Response> {
    const gen = generatorOf(deps, c.req.param('model') ?? '')
    const version = c.req.param('version')
    if (version !== undefined && version !== gen.model.version)
      throw new AppError(
        'NOT_FOUND',
        `model '${gen.name}' has no version '${version}'; its versions are ${gen.model.version}`,
      )
    requireJsonContentType(c.req.header('content-type'))
    const body: GenerateRequest = parseJsonText(
      new TextDecoder().decode(c.get('body')),
      GenerateRequestSchema,
      'invalid generate request',
    )
    const { sampling, controls } = split(body.parameters)
    const events = gen.start(
      engineRequest(gen, gen.profile.encodePrompt(body.text_input), sampling, {
        defaultMaxTokens: 16,
        controls,
        signal: c.req.raw.signal,
      }),
    )
    const base = {
      model_name: gen.name,
      model_version: gen.model.version,
      ...(body.id !== undefined ? { id: body.id } : {}),
    }
    if (stream || sampling.stream) return sseResponse(generateStream(gen, events, base))
    const run = await collectRun(gen, events)
    const answer: GenerateResponse = {
      ...base,
      text_output: run.text,
      finish_reason: run.finishReason,
      expert_weights: run.expertWeights,
      usage: usageOf(run.promptTokens, run.completionTokens),
    }
    return c.json(answer)
  }
}
