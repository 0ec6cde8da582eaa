/**
 * The generation part of the gateway's OpenAPI document: the OpenAI-compatible routes and Triton's generate
 * extension (routing/generation routes), proxied to runners that serve decoder packages.
 * @module
 */
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  CompletionChunkSchema,
  CompletionRequestSchema,
  CompletionSchema,
  componentSchemas,
  errorContent as error,
  GenerateRequestSchema,
  GenerateResponseSchema,
  type Json,
  jsonContent as json,
  ModelListSchema,
  OpenAIErrorBodySchema,
  schemaRef as ref,
} from '@twinserve/shared'
import { deadlineParam, keyErrors, keySecurity, modelParam, routedErrors } from './doc-common.ts'
import { experimentInferHeaders, experimentInferParameters } from './experiment-paths.ts'

export function generationComponents(): Json {
  return {
    ...componentSchemas(
      {
        CompletionRequest: CompletionRequestSchema,
        ChatCompletionRequest: ChatCompletionRequestSchema,
        GenerateRequest: GenerateRequestSchema,
      },
      'input',
      'GenInShared_',
    ),
    ...componentSchemas(
      {
        Completion: CompletionSchema,
        CompletionChunk: CompletionChunkSchema,
        ChatCompletion: ChatCompletionSchema,
        ChatCompletionChunk: ChatCompletionChunkSchema,
        GenerateResponse: GenerateResponseSchema,
        ModelList: ModelListSchema,
        OpenAIErrorBody: OpenAIErrorBodySchema,
      },
      'output',
      'GenOutShared_',
    ),
  }
}

const versionParam: Json = {
  name: 'version',
  in: 'path',
  required: true,
  schema: { type: 'string' },
}

/** A generation route: JSON in, JSON or server-sent events out, errors in the route's own shape. */
function generation(
  summary: string,
  request: string,
  answer: string,
  chunk: string | undefined,
  params: Json[],
  openai: boolean,
): Json {
  const content: Json = { 'application/json': { schema: ref(answer) } }
  if (chunk)
    content['text/event-stream'] = {
      schema: { type: 'string' },
      description: `with stream: each event's data is a ${chunk}; passed through unbuffered`,
    }
  const err = (d: string) => (openai ? json('OpenAIErrorBody', d) : error(d))
  return {
    post: {
      tags: ['generation'],
      summary,
      security: keySecurity,
      parameters: [...params, deadlineParam, ...experimentInferParameters],
      requestBody: { required: true, content: { 'application/json': { schema: ref(request) } } },
      responses: {
        '200': {
          description: openai
            ? 'The generated text, or its stream; served by an A/B arm, `twinserve.arm` names it (a stream: in its first chunk).'
            : 'The generated text, or its stream.',
          headers: experimentInferHeaders,
          content,
        },
        '400': err(
          'Malformed body, prompt over the context limit, max_tokens below 1, bad merge control.',
        ),
        '404': err('No runner serves or has served the model, or an unknown expert.'),
        '429': err('The key’s request rate or tokens_per_minute is spent (Retry-After).'),
        ...keyErrors,
        ...routedErrors,
      },
    },
  }
}

export const GENERATION_PATHS: Json = {
  '/v1/models': {
    get: {
      tags: ['generation'],
      summary: 'Models the key covers (OpenAI list)',
      security: keySecurity,
      responses: { '200': json('ModelList', 'Models.'), ...keyErrors },
    },
  },
  '/v1/completions': generation(
    'OpenAI-compatible completion; the body’s `model` must be covered by the key; merge controls in `twinserve`',
    'CompletionRequest',
    'Completion',
    'CompletionChunk, then [DONE]',
    [],
    true,
  ),
  '/v1/chat/completions': generation(
    'OpenAI-compatible chat completion; merge controls in `twinserve`',
    'ChatCompletionRequest',
    'ChatCompletion',
    'ChatCompletionChunk, then [DONE]',
    [],
    true,
  ),
  '/v2/models/{model}/generate': generation(
    "Triton's generate extension: text_input → text_output",
    'GenerateRequest',
    'GenerateResponse',
    undefined,
    [modelParam],
    false,
  ),
  '/v2/models/{model}/generate_stream': generation(
    "Triton's generate extension, streamed",
    'GenerateRequest',
    'GenerateResponse',
    'GenerateResponse',
    [modelParam],
    false,
  ),
  '/v2/models/{model}/versions/{version}/generate': generation(
    "Triton's generate extension at a version",
    'GenerateRequest',
    'GenerateResponse',
    undefined,
    [modelParam, versionParam],
    false,
  ),
  '/v2/models/{model}/versions/{version}/generate_stream': generation(
    "Triton's generate extension at a version, streamed",
    'GenerateRequest',
    'GenerateResponse',
    'GenerateResponse',
    [modelParam, versionParam],
    false,
  ),
}
