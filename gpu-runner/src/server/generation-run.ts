/**
 * One generation as the HTTP routes see it: the sampling fields of a request turned into the engine's request,
 * and a whole run collected into text, tokens and usage (for the non-streaming answers).
 * @module
 */
import { AppError, type FinishReason } from '@twinserve/shared'
import type { GenerationEvent, GenerationRequest } from '../generate/engine.ts'
import type { TokenChoice } from '../generate/sampler.ts'
import type { TextGenerator } from '../generate/text-generator.ts'

/** The sampling fields shared by completions, chat and generate (OpenAI's names; null = absent). */
export interface SamplingFields {
  max_tokens?: number | null | undefined
  temperature?: number | null | undefined
  top_p?: number | null | undefined
  top_k?: number | null | undefined
  stop?: string | string[] | null | undefined
  seed?: number | null | undefined
  presence_penalty?: number | null | undefined
  frequency_penalty?: number | null | undefined
  repetition_penalty?: number | null | undefined
  logit_bias?: Record<string, number> | null | undefined
  ignore_eos?: boolean | null | undefined
  min_tokens?: number | null | undefined
}

/** OpenAI's defaults: temperature 1, top_p 1; a completion's max_tokens 16 unless the caller says. */
export function engineRequest(
  gen: TextGenerator,
  promptIds: number[],
  f: SamplingFields,
  opts: {
    defaultMaxTokens: number
    logprobs?: number | undefined
    controls: Record<string, unknown> | undefined
    signal: AbortSignal
  },
): GenerationRequest {
  const stop = f.stop == null ? [] : typeof f.stop === 'string' ? [f.stop] : f.stop
  const maxTokens = f.max_tokens ?? Math.min(opts.defaultMaxTokens, gen.room(promptIds.length))
  const minTokens = f.ignore_eos ? 0 : (f.min_tokens ?? 0)
  if (minTokens > maxTokens)
    throw new AppError(
      'INVALID_REQUEST',
      `min_tokens (${minTokens}) is more than max_tokens (${maxTokens})`,
    )
  return {
    promptIds,
    maxTokens,
    // ignore_eos: no end token ends the completion (stop strings still do).
    ...(f.ignore_eos ? { stopTokenIds: [] } : {}),
    sampling: {
      temperature: f.temperature ?? 1,
      topP: f.top_p ?? 1,
      topK: f.top_k ?? 0,
      ...(f.seed != null ? { seed: f.seed } : {}),
      ...(f.presence_penalty ? { presencePenalty: f.presence_penalty } : {}),
      ...(f.frequency_penalty ? { frequencyPenalty: f.frequency_penalty } : {}),
      ...(f.repetition_penalty != null && f.repetition_penalty !== 1
        ? { repetitionPenalty: f.repetition_penalty }
        : {}),
      ...(opts.logprobs !== undefined ? { logprobs: opts.logprobs } : {}),
      ...(minTokens > 0 ? { suppress: { ids: gen.profile.stopTokenIds, picks: minTokens } } : {}),
      ...(f.logit_bias && Object.keys(f.logit_bias).length > 0
        ? { logitBias: new Map(Object.entries(f.logit_bias).map(([id, b]) => [Number(id), b])) }
        : {}),
    },
    stop,
    controls: gen.controlsFor(opts.controls),
    signal: opts.signal,
  }
}

export interface CollectedRun {
  text: string
  finishReason: FinishReason
  promptTokens: number
  completionTokens: number
  expertWeights: Record<string, number>
  /** Every sampled token that is part of the text, with the text it released. */
  tokens: (TokenChoice & { text: string })[]
}

/** Reads a whole run; a cancelled run (client gone) or a failed one throws. */
export async function collectRun(
  gen: TextGenerator,
  events: AsyncIterable<GenerationEvent>,
): Promise<CollectedRun> {
  const run: CollectedRun = {
    text: '',
    finishReason: 'length',
    promptTokens: 0,
    completionTokens: 0,
    expertWeights: gen.weightsByName(undefined),
    tokens: [],
  }
  for await (const e of events) {
    if (e.type === 'start') {
      run.promptTokens = e.promptTokens
      run.expertWeights = gen.weightsByName(e.expertWeights)
    } else if (e.type === 'token') {
      run.text += e.text
      run.tokens.push(e)
    } else if (e.type === 'error') throw e.error
    else {
      if (e.reason === 'cancelled') throw new AppError('CLIENT_CLOSED', 'the request was cancelled')
      run.text += e.text
      run.finishReason = e.reason
      run.completionTokens = e.completionTokens
    }
  }
  return run
}

export function usageOf(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  }
}
