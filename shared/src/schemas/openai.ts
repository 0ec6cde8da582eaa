/**
 * The OpenAI-compatible generation API (issue 14): request and response bodies of `POST /v1/completions`,
 * `POST /v1/chat/completions` (with `stream: true`, server-sent chunks) and `GET /v1/models`, as the official
 * `openai` client sends and reads them, plus Twinserve's extension field `twinserve`: the merge controls of the
 * V2 `parameters` (merge-controls.ts), and in answers the expert weights the sequence applied.
 *
 * Requests are strict like OpenAI's own API ("Unrecognized request argument supplied"): a misspelt key is a 400
 * naming it. Fields OpenAI has and we do not serve (`n` > 1, penalties) are accepted only at their no-op value.
 * `top_k` at the top level is the sampler's (vLLM's extension); the router's is `twinserve.top_k`.
 * @see https://platform.openai.com/docs/api-reference/completions
 * @see https://platform.openai.com/docs/api-reference/chat
 * @module
 */
import { z } from 'zod'

/** OpenAI caps `logprobs` (completions) and `top_logprobs` (chat) at 5 and 20; we keep 5 for both. */
export const MAX_TOP_LOGPROBS = 5
/** At most this many stop strings, as OpenAI. */
export const MAX_STOP_STRINGS = 4

const StopSchema = z
  .union([
    z.string().min(1, 'a stop string must not be empty'),
    z
      .array(z.string().min(1, 'a stop string must not be empty'))
      .max(MAX_STOP_STRINGS, `at most ${MAX_STOP_STRINGS} stop strings`),
  ])
  .nullish()

/** The `twinserve` extension of a request: merge controls, as in a V2 request's `parameters`. */
export const TwinserveExtensionSchema = z.record(z.string(), z.unknown())

/** Sampling and length fields both endpoints share. */
/** The most choices (`n`) one request may ask for: each is a sequence of its own, with its own KV cache. */
export const MAX_CHOICES = 8

/** OpenAI's logit bias: token ids (as JSON object keys) to a bias in [−100, 100]. */
const LogitBiasSchema = z
  .record(
    z.string().regex(/^\d+$/, 'keys are token ids'),
    z.number().min(-100, 'must be between -100 and 100').max(100, 'must be between -100 and 100'),
  )
  .nullish()

/** OpenAI's presence and frequency penalties: −2 to 2, 0 or absent for none. */
const PenaltySchema = z
  .number()
  .min(-2, 'must be between -2 and 2')
  .max(2, 'must be between -2 and 2')
  .nullish()

const samplingFields = {
  model: z.string().min(1),
  max_tokens: z
    .number()
    .int('must be a whole number')
    .min(1, 'must be at least 1 (the number of tokens to generate)')
    .nullish(),
  temperature: z
    .number()
    .min(0, 'must be between 0 and 2')
    .max(2, 'must be between 0 and 2')
    .nullish(),
  top_p: z.number().gt(0, 'must be in (0, 1]').max(1, 'must be in (0, 1]').nullish(),
  /** vLLM's extension: keep the k most likely tokens (0 or absent: all). */
  top_k: z.number().int().min(0).nullish(),
  stop: StopSchema,
  /** Same seed, same parameters, same model: same text. */
  seed: z.number().int().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).nullish(),
  /** Completions (choices) to sample for the prompt, each with its own sequence; at most MAX_CHOICES. */
  n: z
    .number()
    .int()
    .min(1, `must be between 1 and ${MAX_CHOICES}`)
    .max(MAX_CHOICES, `must be between 1 and ${MAX_CHOICES}`)
    .nullish(),
  /** OpenAI's: subtracted from the logit of every token already in the completion. */
  presence_penalty: PenaltySchema,
  /** OpenAI's: subtracted from a token's logit once per time it is already in the completion. */
  frequency_penalty: PenaltySchema,
  /**
   * vLLM's extension (CTRL's): a token already in the prompt or the completion has a positive logit divided by it and
   * a negative one multiplied; 1 or absent: none.
   */
  repetition_penalty: z.number().gt(0, 'must be in (0, 2]').max(2, 'must be in (0, 2]').nullish(),
  /** OpenAI's: token id (as a string) → a bias added to its logit, −100 (never) to 100 (always). */
  logit_bias: LogitBiasSchema,
  /** vLLM's extension: the model's end tokens do not end the completion (it runs to max_tokens or a stop string). */
  ignore_eos: z.boolean().nullish(),
  /** vLLM's extension: the model's end tokens cannot be sampled before this many tokens. */
  min_tokens: z.number().int().min(0, 'must be at least 0').nullish(),
  user: z.string().nullish(),
  twinserve: TwinserveExtensionSchema.optional(),
}

export const CompletionRequestSchema = z.strictObject({
  ...samplingFields,
  prompt: z.union([
    z.string(),
    z.array(z.string()).length(1, 'only one prompt per request is served'),
  ]),
  /** Log-probabilities of the chosen token and of this many most likely ones. */
  logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  echo: z.literal(false, 'echo is not served').nullish(),
})
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>

const TextPartSchema = z.strictObject({ type: z.literal('text'), text: z.string() })

export const ChatMessageSchema = z.strictObject({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.union([z.string(), z.array(TextPartSchema)]),
  name: z.string().optional(),
})
export type ChatMessage = z.infer<typeof ChatMessageSchema>

export const ChatCompletionRequestSchema = z.strictObject({
  ...samplingFields,
  messages: z.array(ChatMessageSchema).min(1, 'must hold at least one message'),
  max_completion_tokens: samplingFields.max_tokens,
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
})
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>

export const UsageSchema = z.object({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
  total_tokens: z.number().int().nonnegative(),
})
export type Usage = z.infer<typeof UsageSchema>

export const FinishReasonSchema = z.enum(['stop', 'length'])
export type FinishReason = z.infer<typeof FinishReasonSchema>

/**
 * The applied mix, by expert name (all 0: the shared model); through the gateway, when a running A/B experiment
 * served the request, also the arm and the experiment (as the x-twinserve-arm / x-twinserve-experiment headers).
 */
export const TwinserveAnswerSchema = z.object({
  expert_weights: z.record(z.string(), z.number()),
  arm: z.string().optional(),
  experiment: z.string().optional(),
})
export type TwinserveAnswer = z.infer<typeof TwinserveAnswerSchema>

/** Completions' legacy logprobs: parallel arrays, as OpenAI answers them. */
export const CompletionLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number()),
  top_logprobs: z.array(z.record(z.string(), z.number())),
  text_offset: z.array(z.number().int()),
})

export const CompletionChoiceSchema = z.object({
  index: z.number().int(),
  text: z.string(),
  logprobs: CompletionLogprobsSchema.nullable(),
  finish_reason: FinishReasonSchema.nullable(),
})

export const CompletionSchema = z.object({
  id: z.string(),
  object: z.literal('text_completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(CompletionChoiceSchema),
  usage: UsageSchema.optional(),
  twinserve: TwinserveAnswerSchema.optional(),
})
export type Completion = z.infer<typeof CompletionSchema>

const TopLogprobSchema = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable(),
})
export const ChatLogprobsSchema = z.object({
  content: z.array(TopLogprobSchema.extend({ top_logprobs: z.array(TopLogprobSchema) })),
})
export type ChatLogprobs = z.infer<typeof ChatLogprobsSchema>

export const ChatCompletionSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      message: z.object({ role: z.literal('assistant'), content: z.string() }),
      logprobs: ChatLogprobsSchema.nullable(),
      finish_reason: FinishReasonSchema,
    }),
  ),
  usage: UsageSchema,
  twinserve: TwinserveAnswerSchema.optional(),
})
export type ChatCompletion = z.infer<typeof ChatCompletionSchema>

/** One server-sent chunk of a streamed chat completion (`data: {…}`; the stream ends with `data: [DONE]`). */
export const ChatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal('chat.completion.chunk'),
  created: z.number().int(),
  model: z.string(),
  choices: z.array(
    z.object({
      index: z.number().int(),
      delta: z.object({ role: z.literal('assistant').optional(), content: z.string().optional() }),
      logprobs: ChatLogprobsSchema.nullable(),
      finish_reason: FinishReasonSchema.nullable(),
    }),
  ),
  usage: UsageSchema.nullish(),
  twinserve: TwinserveAnswerSchema.optional(),
})
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunkSchema>

/** A streamed completion's chunk: the completion's shape with a piece of text per choice. */
export const CompletionChunkSchema = CompletionSchema.extend({ usage: UsageSchema.nullish() })
export type CompletionChunk = z.infer<typeof CompletionChunkSchema>

export const ModelListSchema = z.object({
  object: z.literal('list'),
  data: z.array(
    z.object({
      id: z.string(),
      object: z.literal('model'),
      created: z.number().int(),
      owned_by: z.string(),
    }),
  ),
})
export type ModelList = z.infer<typeof ModelListSchema>

/**
 * Triton's generate extension (`POST /v2/models/{m}/generate` and `…/generate_stream`): the inputs by name at
 * the top level (`text_input`), sampling and merge controls in `parameters`; the answer carries `text_output`.
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_generate.md
 */
export const GenerateRequestSchema = z.strictObject({
  id: z.string().optional(),
  text_input: z.string(),
  parameters: z.record(z.string(), z.unknown()).optional(),
})
export type GenerateRequest = z.infer<typeof GenerateRequestSchema>

/** The sampling keys of a generate request's `parameters`; every other key is a merge control. */
export const GenerateSamplingSchema = z.strictObject({
  max_tokens: samplingFields.max_tokens,
  temperature: samplingFields.temperature,
  top_p: samplingFields.top_p,
  /** The sampler's top-k: in a generate request the router's `top_k` cannot be set (use `experts` or the router's default). */
  top_k: samplingFields.top_k,
  stop: StopSchema,
  seed: samplingFields.seed,
  presence_penalty: samplingFields.presence_penalty,
  frequency_penalty: samplingFields.frequency_penalty,
  repetition_penalty: samplingFields.repetition_penalty,
  logit_bias: samplingFields.logit_bias,
  ignore_eos: samplingFields.ignore_eos,
  min_tokens: samplingFields.min_tokens,
  stream: z.boolean().nullish(),
})
export const GENERATE_SAMPLING_KEYS: readonly string[] = Object.keys(GenerateSamplingSchema.shape)

export const GenerateResponseSchema = z.object({
  model_name: z.string(),
  model_version: z.string(),
  id: z.string().optional(),
  text_output: z.string(),
  finish_reason: FinishReasonSchema.optional(),
  expert_weights: z.record(z.string(), z.number()).optional(),
  /** Twinserve's addition: the tokens counted, as /v1's `usage` (a stream: in its last event). */
  usage: UsageSchema.optional(),
})
export type GenerateResponse = z.infer<typeof GenerateResponseSchema>
