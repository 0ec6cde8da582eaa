/**
 * The runner's OpenAPI 3.1 document (docs/api/runner-openapi.json, written by `npm run docs:openapi`): the routes
 * app.ts serves, with the shared zod schemas they speak, so the reference cannot drift from what the runner
 * accepts. openapi-document.test.ts checks it names exactly the app's routes.
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
  DEADLINE_HEADER,
  errorContent as error,
  GenerateRequestSchema,
  GenerateResponseSchema,
  type Json,
  jsonContent as json,
  ModelListSchema,
  OIP_INPUT_SCHEMAS,
  OIP_OUTPUT_SCHEMAS,
  RepositoryLoadRequestSchema,
  RepositoryLoadResponseSchema,
  RepositoryUnloadRequestSchema,
  RUNNER_SIGNATURE_SCHEMES,
  schemaRef as ref,
} from '@twinserve/shared'

// The tenant header is signed when present, not required: it is not listed here.
const signed = [
  { runnerSignature: [], runnerTimestamp: [], runnerNonce: [], runnerContentSha256: [] },
]
const model: Json = { name: 'model', in: 'path', required: true, schema: { type: 'string' } }
const deadline: Json = {
  name: DEADLINE_HEADER,
  in: 'header',
  required: false,
  description: 'The gateway waits this many ms for this attempt; the runner never waits longer.',
  schema: { type: 'integer', minimum: 1 },
}
const unsigned = error('Missing, wrong or expired signature (UNAUTHENTICATED).')

/** Probes cannot sign: health is open. */
const HEALTH_PATHS: Json = {
  '/v2/health/live': {
    get: {
      summary: 'Liveness (the process serves HTTP); unsigned',
      responses: { '200': json('LiveResponse', 'Live.') },
    },
  },
  '/v2/health/ready': {
    get: {
      summary: 'Readiness: every package loaded and not draining; unsigned',
      responses: {
        '200': json('ReadyResponse', 'Ready.'),
        '503': json('ReadyResponse', 'Loading or draining.'),
      },
    },
  },
}

/** Scrapers cannot sign either. */
const METRICS_PATH: Json = {
  '/metrics': {
    get: {
      summary: 'Prometheus metrics (twinserve_runner_*); unsigned, keep it inside the cluster',
      responses: {
        '200': {
          description: 'Prometheus text format.',
          content: { 'text/plain': { schema: { type: 'string' } } },
        },
      },
    },
  },
}

const version: Json = {
  name: 'version',
  in: 'path',
  required: true,
  description: "The package's version id (`versions` in the model metadata).",
  schema: { type: 'string' },
}
const noModel = error('No such model or version (NOT_FOUND).')

function infer(params: Json[]): Json {
  return {
    post: {
      summary: 'Inference, with per-request merge controls',
      description:
        "JSON, or the binary tensor extension: a JSON header of `Inference-Header-Content-Length` bytes, then each binary input's raw little-endian bytes (`parameters.binary_data_size`). Content-Type may be absent, application/json or application/octet-stream; Content-Encoding gzip or deflate. Outputs come back as JSON or binary (`binary_data`, `binary_data_output`), or as top-k classes (`classification`); the answer is gzip- or deflate-compressed when Accept-Encoding allows.",
      security: signed,
      parameters: [...params, deadline],
      requestBody: {
        required: true,
        content: {
          'application/json': { schema: ref('InferenceRequest') },
          'application/octet-stream': {
            schema: { type: 'string', format: 'binary' },
          },
        },
      },
      responses: {
        '200': {
          description:
            'Outputs (and the expert weights applied); binary outputs after the JSON header.',
          content: {
            'application/json': { schema: ref('InferenceResponse') },
            'application/octet-stream': { schema: { type: 'string', format: 'binary' } },
          },
        },
        '400': error('Malformed body, tensor or merge control (INVALID_REQUEST).'),
        '401': unsigned,
        '404': error('No such model or version (NOT_FOUND) or expert (UNKNOWN_EXPERT).'),
        '413': error(
          'Body larger than RUNNER_MAX_BODY_BYTES, inflated or not (PAYLOAD_TOO_LARGE).',
        ),
        '415': error('Content-Type or Content-Encoding not read here (UNSUPPORTED_MEDIA_TYPE).'),
        '503': {
          ...error('Queue full or draining (RUNNER_OVERLOADED).'),
          headers: { 'retry-after': { schema: { type: 'integer' } } },
        },
        '504': error('Deadline passed before the run finished (RUNNER_TIMEOUT).'),
      },
    },
  }
}

const overloaded = {
  ...error('Too many sequences or the KV-cache budget is full (RUNNER_OVERLOADED).'),
  headers: { 'retry-after': { schema: { type: 'integer' } } },
}

/** A generation route: JSON in, JSON or server-sent events out (generate-routes.ts, openai-routes.ts). */
function generation(
  summary: string,
  request: string,
  answer: string,
  chunk: string | undefined,
  params: Json[] = [],
): Json {
  const content: Json = { 'application/json': { schema: ref(answer) } }
  if (chunk)
    content['text/event-stream'] = {
      schema: { type: 'string' },
      description: `with stream: each event's data is a ${chunk}`,
    }
  return {
    post: {
      summary,
      security: signed,
      ...(params.length ? { parameters: params } : {}),
      requestBody: { required: true, content: { 'application/json': { schema: ref(request) } } },
      responses: {
        '200': { description: 'The generated text, or its stream.', content },
        '400': error(
          'Malformed body, prompt over the context limit, max_tokens below 1, bad merge control (INVALID_REQUEST).',
        ),
        '401': unsigned,
        '404': error('No generating model of that name (NOT_FOUND) or expert (UNKNOWN_EXPERT).'),
        '415': error('Content-Type is not JSON (UNSUPPORTED_MEDIA_TYPE).'),
        '503': overloaded,
      },
    },
  }
}

/** The OpenAI-compatible generation routes (decoder packages served with --generation). */
const OPENAI_PATHS: Json = {
  '/v1/models': {
    get: {
      summary: 'Models that generate text (OpenAI list)',
      security: signed,
      responses: { '200': json('ModelList', 'Models.'), '401': unsigned },
    },
  },
  '/v1/completions': generation(
    'OpenAI-compatible completion; merge controls in `twinserve`',
    'CompletionRequest',
    'Completion',
    'CompletionChunk, then [DONE]',
  ),
  '/v1/chat/completions': generation(
    'OpenAI-compatible chat completion (the package profile’s chat template); merge controls in `twinserve`',
    'ChatCompletionRequest',
    'ChatCompletion',
    'ChatCompletionChunk, then [DONE]',
  ),
}

/** The per-model routes, unversioned or under `/versions/{version}`. */
function modelPaths(base: string, params: Json[]): Json {
  return {
    [base]: {
      get: {
        summary: 'Model metadata (versions; experts, variants, provider in parameters)',
        security: signed,
        parameters: params,
        responses: {
          '200': json('ModelMetadata', 'Inputs, outputs, platform, versions.'),
          '401': unsigned,
          '404': noModel,
        },
      },
    },
    [`${base}/ready`]: {
      get: {
        summary: 'Whether the model is ready',
        security: signed,
        parameters: params,
        responses: {
          '200': json('ModelReadyResponse', 'Ready.'),
          '503': json('ModelReadyResponse', 'Not ready (draining).'),
          '401': unsigned,
          '404': noModel,
        },
      },
    },
    [`${base}/config`]: {
      get: {
        summary: "Triton's model configuration",
        security: signed,
        parameters: params,
        responses: {
          '200': json('ModelConfig', 'Configuration.'),
          '401': unsigned,
          '404': noModel,
        },
      },
    },
    [`${base}/stats`]: {
      get: {
        summary: "Triton's inference statistics for the model",
        security: signed,
        parameters: params,
        responses: {
          '200': json('InferenceStatistics', 'Statistics.'),
          '401': unsigned,
          '404': noModel,
        },
      },
    },
    [`${base}/infer`]: infer(params),
    [`${base}/generate`]: generation(
      "Triton's generate extension: text_input → text_output",
      'GenerateRequest',
      'GenerateResponse',
      undefined,
      params,
    ),
    [`${base}/generate_stream`]: generation(
      "Triton's generate extension, streamed",
      'GenerateRequest',
      'GenerateResponse',
      'GenerateResponse (a piece of text_output)',
      params,
    ),
  }
}

/** What the gateway calls, signed. */
const SIGNED_PATHS: Json = {
  '/v2': {
    get: {
      summary: 'Server metadata (with provider and models)',
      security: signed,
      responses: {
        '200': json('ServerMetadata', 'Name, version, extensions.'),
        '401': unsigned,
      },
    },
  },
  '/v2/models/stats': {
    get: {
      summary: "Triton's inference statistics for every model",
      security: signed,
      responses: { '200': json('InferenceStatistics', 'Statistics.'), '401': unsigned },
    },
  },
  '/v2/repository/index': {
    post: {
      summary:
        'The repository index: every model version loaded and its state (READY, or UNLOADING while a replaced version finishes its requests)',
      security: signed,
      responses: { '200': json('RepositoryIndex', 'Models.'), '401': unsigned },
    },
  },
  '/v2/repository/models/{model}/load': {
    post: {
      summary: 'Hot swap: load a package as the model’s new version (or as a new model)',
      description:
        'The package directory is relative to the runner’s --repository-root or absolute inside it. Requests in flight finish on the old version; new requests go to the new one when this answers; the old version is released when its last request is done. The memory for the new version beside everything held is checked first.',
      security: signed,
      parameters: [model],
      requestBody: {
        required: true,
        content: { 'application/json': { schema: ref('RepositoryLoadRequest') } },
      },
      responses: {
        '200': json('RepositoryLoadResponse', 'Loaded: the version new requests go to.'),
        '400': error(
          'Malformed body, the package is another model, or the model generates text (INVALID_REQUEST).',
        ),
        '401': unsigned,
        '403': error(
          'Hot loading is off, or the package is outside --repository-root (FORBIDDEN).',
        ),
        '404': error('No such package directory (NOT_FOUND).'),
        '422': error('The package is invalid or does not load (INVALID_MODEL).'),
        '507': error(
          'The new version does not fit beside the versions held (INSUFFICIENT_MEMORY); nothing changed.',
        ),
      },
    },
  },
  '/v2/repository/models/{model}/unload': {
    post: {
      summary: 'Stop serving a model: new requests get 404, requests in flight finish',
      security: signed,
      parameters: [model],
      requestBody: {
        required: false,
        content: { 'application/json': { schema: ref('RepositoryUnloadRequest') } },
      },
      responses: {
        '200': json('RepositoryLoadResponse', 'Unloaded.'),
        '400': error('Malformed body, or the model generates text (INVALID_REQUEST).'),
        '401': unsigned,
        '404': noModel,
      },
    },
  },
  ...modelPaths('/v2/models/{model}', [model]),
  ...modelPaths('/v2/models/{model}/versions/{version}', [model, version]),
}

export function buildRunnerOpenApiDocument(version: string): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Twinserve GPU runner',
      version,
      description:
        'Open Inference Protocol V2 REST, served by `twinserve serve`. The gateway signs every request (HMAC-SHA256 with RUNNER_SIGNING_SECRET); health and metrics are unsigned for probes and scrapers. Merge controls go in the inference request’s `parameters` (schema MergeControls).',
    },
    components: {
      schemas: {
        ...componentSchemas(OIP_INPUT_SCHEMAS, 'input', 'InputShared_'),
        ...componentSchemas(OIP_OUTPUT_SCHEMAS, 'output', 'OutputShared_'),
        ...componentSchemas(
          {
            RepositoryLoadRequest: RepositoryLoadRequestSchema,
            RepositoryUnloadRequest: RepositoryUnloadRequestSchema,
          },
          'input',
          'RepoInShared_',
        ),
        ...componentSchemas(
          { RepositoryLoadResponse: RepositoryLoadResponseSchema },
          'output',
          'RepoOutShared_',
        ),
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
          },
          'output',
          'GenOutShared_',
        ),
      },
      securitySchemes: RUNNER_SIGNATURE_SCHEMES,
    },
    paths: { ...HEALTH_PATHS, ...SIGNED_PATHS, ...OPENAI_PATHS, ...METRICS_PATH },
  }
}
