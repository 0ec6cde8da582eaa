/**
 * The OpenAI-compatible API at the gateway (issue 14), mounted at /v1, for keys with the `infer` scope:
 *
 *   GET  /v1/models            the catalog's models the key covers, as OpenAI lists models
 *   POST /v1/completions       proxied to a runner holding the body's `model` (the key must cover it: 403)
 *   POST /v1/chat/completions  likewise; `stream: true` answers server-sent events, passed on as they arrive
 *
 * Bodies are checked here against the runner's own schemas (shared/src/schemas/openai.ts), merge controls
 * (`twinserve`) included, so a bad request costs no runner round trip; the exact text is what goes on, unless
 * a running A/B experiment's arm replaces the controls (experiments/enrolment.ts; the unit of a `user_id`
 * experiment is the x-twinserve-user header, else the body's `user`). Errors take OpenAI's shape
 * (openai-errors.ts). Generation, failover, token charging and the arm in the answer: generation-proxy.ts.
 * @module
 */
import {
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  CompletionRequestSchema,
  CompletionSchema,
  type ModelList,
  parseJsonText,
  parseMergeControls,
} from '@twinserve/shared'
import { type Context, Hono } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { enrol } from '../experiments/enrolment.ts'
import { guard } from '../guard.ts'
import { readJsonText } from '../http/json-body.ts'
import { registryStub } from '../routing/registry-stub.ts'
import { routingSnapshot, runnerPool } from '../routing/runner-pool.ts'
import { proxyGeneration } from './generation-proxy.ts'
import { coversModel, requireModel } from './model-access.ts'
import { openAIErrors } from './openai-errors.ts'

const keyAccess = (countAs: 'generate' | 'model_metadata') =>
  guard({ access: 'key', scope: 'infer', countAs, rateLimit: true })

const ENDPOINTS = {
  completions: {
    path: '/v1/completions',
    request: CompletionRequestSchema,
    answer: CompletionSchema,
    what: 'invalid completion request',
  },
  chat: {
    path: '/v1/chat/completions',
    request: ChatCompletionRequestSchema,
    answer: ChatCompletionSchema,
    what: 'invalid chat completion request',
  },
} as const

/** The variant a `twinserve.variant` control asks for (runners holding it are preferred). */
function variantOf(controls: Record<string, unknown> | undefined): string | undefined {
  const v = controls?.variant
  return typeof v === 'string' ? v : undefined
}

function generation(endpoint: keyof typeof ENDPOINTS) {
  const { path, request, answer, what } = ENDPOINTS[endpoint]
  return async function generate(c: Context<AppEnv>): Promise<Response> {
    const arrived = Date.now()
    const text = await readJsonText(c, c.get('config').MAX_BODY_BYTES)
    const body = parseJsonText(text, request, what)
    requireModel(c, body.model)
    // A misspelt control is refused here, before any runner is asked.
    parseMergeControls(body.twinserve)
    // A running A/B experiment on the model may replace the controls with its arm's (as for V2 infer).
    const enrolment = await enrol(c, {
      model: body.model,
      controls: body.twinserve,
      arrived,
      bodyUser: body.user,
    })
    const stream = body.stream === true
    const wantsUsage = body.stream_options?.include_usage === true
    const controls = enrolment.kind === 'as_sent' ? body.twinserve : enrolment.controls
    let forward = text
    if ((stream && !wantsUsage) || enrolment.kind !== 'as_sent') {
      const json = JSON.parse(text) as Record<string, unknown>
      // The runner counts a stream's tokens only when asked; the gateway asks, and drops that chunk again.
      if (stream && !wantsUsage) json.stream_options = { include_usage: true }
      if (enrolment.kind !== 'as_sent') {
        if (Object.keys(enrolment.controls).length > 0) json.twinserve = enrolment.controls
        else delete json.twinserve
      }
      forward = JSON.stringify(json)
    }
    return proxyGeneration(c, {
      model: body.model,
      path,
      body: forward,
      stream,
      okSchema: answer,
      dropUsageOnly: !wantsUsage,
      arrived,
      variant: variantOf(controls),
      arm: enrolment.kind === 'arm' ? { enrolment, openai: true } : undefined,
    })
  }
}

async function listModels(c: Context<AppEnv>): Promise<Response> {
  const pool = runnerPool(c.get('config'))
  const snapshot = await routingSnapshot(pool, () => registryStub(c.env).snapshot())
  const body: ModelList = {
    object: 'list',
    data: snapshot.catalog
      .filter((m) => coversModel(c, m.name))
      .map((m) => ({
        id: m.name,
        object: 'model',
        created: Math.floor(m.first_seen / 1000),
        owned_by: 'twinserve',
      })),
  }
  return c.json(body)
}

export const openai = new Hono<AppEnv>()
  // Registered per path (not `*`): /v1/feedback, mounted beside these, keeps the shared error body.
  .use('/models', openAIErrors())
  .use('/completions', openAIErrors())
  .use('/chat/completions', openAIErrors())
  .get('/models', keyAccess('model_metadata'), listModels)
  .post('/completions', keyAccess('generate'), generation('completions'))
  .post('/chat/completions', keyAccess('generate'), generation('chat'))
