/**
 * Generation through the gateway (issue 14): /v1 completions and chat (whole and streamed), /v1/models, V2
 * generate[_stream], against runner STAND-INS (dev/runner-stand-in.ts, real HTTP servers that check the
 * gateway's signatures): streams passed on as they arrive, failover only before the first byte, a cancelled
 * client cancels the runner's stream, OpenAI-shaped errors, and the per-key token limit.
 */
import {
  ChatCompletionChunkSchema,
  CompletionSchema,
  GatewayMetricsSchema,
  GenerateResponseSchema,
  ModelListSchema,
  OpenAIErrorBodySchema,
} from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { bearer, createKey, fleet, gw, migrate, retire, standIns } from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

let key: string

beforeAll(async () => {
  await migrate()
  key = (await createKey({ tenant: 'gen', scopes: ['infer'], models: ['*'] })).key
})

const post = (path: string, body: unknown, token = key, init: RequestInit = {}) =>
  gw(path, {
    method: 'POST',
    headers: { ...bearer(token), 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...init,
  })

/** The `data:` payloads of a whole event-stream text. */
const dataOf = (text: string) =>
  text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))

async function openAIError(res: Response, status: number, code: string) {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  const body = OpenAIErrorBodySchema.parse(JSON.parse(text))
  expect(body.error.code).toBe(code)
  expect(body.request_id).toBe(res.headers.get('x-request-id'))
  return body
}

describe('generation through the gateway (stand-ins over real HTTP)', () => {
  it('streams a chat completion as events, with the merge controls passed on and usage counted', async () => {
    const [id = ''] = await fleet('chat', 1, 'lm-a')
    const twinserve = { experts: { a: 0.7, b: 0.3 } }
    const res = await post('/v1/chat/completions', {
      model: 'lm-a',
      messages: [{ role: 'user', content: 'hello there' }],
      max_tokens: 5,
      stream: true,
      twinserve,
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    expect(res.headers.get('x-twinserve-runner')).toBe(id)
    const data = dataOf(await res.text())
    expect(data.at(-1)).toBe('[DONE]')
    const chunks = data.slice(0, -1).map((d) => ChatCompletionChunkSchema.parse(JSON.parse(d)))
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('w0 w1 w2 w3 w4 ')
    // The gateway asked the runner for usage (to count tokens) and left that chunk out: not asked for.
    expect(chunks.every((c) => c.choices.length > 0 && !c.usage)).toBe(true)
    const stats = await standIns.stats(id)
    expect(stats.bad_signatures).toBe(0)
    const sent = JSON.parse(stats.last_generate_body) as Record<string, unknown>
    expect(sent.twinserve).toEqual(twinserve)
    expect(sent.stream_options).toEqual({ include_usage: true })

    // Asked for, the usage chunk comes through.
    const withUsage = await post('/v1/chat/completions', {
      model: 'lm-a',
      messages: [{ role: 'user', content: 'hello there' }],
      max_tokens: 2,
      stream: true,
      stream_options: { include_usage: true },
    })
    const last = dataOf(await withUsage.text()).at(-2) ?? ''
    expect(ChatCompletionChunkSchema.parse(JSON.parse(last)).usage).toEqual({
      prompt_tokens: 2,
      completion_tokens: 2,
      total_tokens: 4,
    })
    await retire([id])
  })

  it('answers whole completions and V2 generate[_stream]; lists the models the key covers', async () => {
    const ids = await fleet('whole', 1, 'lm-b')
    const res = await post('/v1/completions', { model: 'lm-b', prompt: 'one two', max_tokens: 3 })
    const text = await res.text()
    expect(res.status, text).toBe(200)
    const body = CompletionSchema.parse(JSON.parse(text))
    expect(body.choices[0]?.text).toBe('w0 w1 w2 ')
    expect(body.usage?.total_tokens).toBe(5)

    const gen = await post('/v2/models/lm-b/generate', {
      text_input: 'x',
      parameters: { max_tokens: 2 },
    })
    expect(GenerateResponseSchema.parse(await gen.json()).text_output).toBe('w0 w1 ')
    const streamed = await post('/v2/models/lm-b/generate_stream', {
      text_input: 'x',
      parameters: { max_tokens: 3 },
    })
    expect(streamed.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const pieces = dataOf(await streamed.text()).map((d) =>
      GenerateResponseSchema.parse(JSON.parse(d)),
    )
    expect(pieces.map((p) => p.text_output).join('')).toBe('w0 w1 w2 ')

    const only = await createKey({ tenant: 'gen', scopes: ['infer'], models: ['lm-b'] })
    const list = ModelListSchema.parse(
      await (await gw('/v1/models', { headers: bearer(only.key) })).json(),
    )
    expect(list.data.map((m) => m.id)).toEqual(['lm-b'])
    await retire(ids)
  })

  it('refuses bad requests in OpenAI shape before any runner call: 400, 403, 404', async () => {
    const [id = ''] = await fleet('bad', 1, 'lm-c')
    const zero = await post('/v1/completions', { model: 'lm-c', prompt: 'x', max_tokens: 0 })
    const e = await openAIError(zero, 400, 'INVALID_REQUEST')
    expect(e.error.type).toBe('invalid_request_error')
    expect(e.error.message).toMatch(/max_tokens/)
    await openAIError(
      await post('/v1/chat/completions', {
        model: 'lm-c',
        messages: [{ role: 'user', content: 'x' }],
        twinserve: { topk: 2 },
      }),
      400,
      'INVALID_REQUEST',
    )
    const other = await createKey({ tenant: 'gen', scopes: ['infer'], models: ['elsewhere'] })
    await openAIError(
      await post('/v1/completions', { model: 'lm-c', prompt: 'x' }, other.key),
      403,
      'FORBIDDEN',
    )
    expect((await standIns.stats(id)).generate).toBe(0)
    const unknown = await openAIError(
      await post('/v1/completions', { model: 'no-such-model', prompt: 'x' }),
      404,
      'NOT_FOUND',
    )
    expect(unknown.error.type).toBe('not_found_error')
    // A runner's own 4xx is relayed in the same shape.
    await standIns.behave(id, { mode: 'fail', status: 422 })
    await openAIError(
      await post('/v1/completions', { model: 'lm-c', prompt: 'x' }),
      422,
      'NON_FINITE_OUTPUT',
    )
    await retire([id])
  })

  it('fails over before the first byte (503, reset), never hedges a stream', async () => {
    const ids = await fleet('fo', 2, 'lm-d')
    await standIns.behave(ids[0] ?? '', { mode: 'fail', status: 503 })
    await standIns.behave(ids[1] ?? '', { mode: 'fail', status: 503 })
    const busy = await post('/v1/completions', { model: 'lm-d', prompt: 'x', stream: true })
    expect(busy.status).toBe(503)
    expect(busy.headers.get('retry-after')).not.toBeNull()
    await standIns.behave(ids[0] ?? '', { mode: 'reset' })
    await standIns.behave(ids[1] ?? '', { mode: 'ok' })
    for (let i = 0; i < 4; i++) {
      const res = await post('/v1/completions', { model: 'lm-d', prompt: 'x', stream: true })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-twinserve-runner')).toBe(ids[1])
      expect(dataOf(await res.text()).at(-1)).toBe('[DONE]')
    }
    await retire(ids)
  })

  it('a client that goes away mid-stream cancels the runner call', async () => {
    const [id = ''] = await fleet('cancel', 1, 'lm-e')
    await standIns.behave(id, { mode: 'slow_tokens', ms: 50 })
    const res = await post('/v1/chat/completions', {
      model: 'lm-e',
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 200,
      stream: true,
    })
    expect(res.status).toBe(200)
    const reader = res.body?.getReader()
    const first = await reader?.read()
    expect(first?.done).toBe(false)
    await reader?.cancel()
    let cancelled = 0
    for (let i = 0; i < 100 && cancelled === 0; i++) {
      await new Promise((r) => setTimeout(r, 20))
      cancelled = (await standIns.stats(id)).streams_cancelled
    }
    expect(cancelled).toBe(1)
    await retire([id])
  })

  it('charges prompt + completion tokens to a key with tokens_per_minute; 429 + Retry-After when spent', async () => {
    const ids = await fleet('tpm', 1, 'lm-f')
    const limited = await createKey({
      tenant: 'gen',
      scopes: ['infer'],
      models: ['*'],
      tokens_per_minute: 12,
    })
    expect(limited.tokens_per_minute).toBe(12)
    // 2 prompt + 8 completion tokens: 2 left.
    const first = await post(
      '/v1/completions',
      { model: 'lm-f', prompt: 'a b', max_tokens: 8 },
      limited.key,
    )
    expect(first.status).toBe(200)
    await first.text()
    // A stream of 2 + 4: the budget goes below zero once it has been counted.
    const second = await post(
      '/v1/chat/completions',
      { model: 'lm-f', messages: [{ role: 'user', content: 'a b' }], max_tokens: 4, stream: true },
      limited.key,
    )
    expect(second.status).toBe(200)
    await second.text()
    let refused: Response | undefined
    for (let i = 0; i < 50; i++) {
      const res = await post(
        '/v1/completions',
        { model: 'lm-f', prompt: 'a', max_tokens: 1 },
        limited.key,
      )
      if (res.status === 429) {
        refused = res
        break
      }
      await res.text()
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(refused).toBeDefined()
    const err = await openAIError(refused as Response, 429, 'RATE_LIMITED')
    expect(err.error.type).toBe('rate_limit_error')
    expect(err.error.message).toMatch(/12 tokens\/min/)
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    // A key without the limit is not affected.
    expect((await post('/v1/completions', { model: 'lm-f', prompt: 'a' })).status).toBe(200)
    await retire(ids)
  })

  it('counts the answers’ prompt and completion tokens on /metrics, by model and tenant', async () => {
    const ids = await fleet('tok', 1, 'lm-t')
    const counted = await createKey({ tenant: 'tok-tenant', scopes: ['infer'], models: ['*'] })
    // 2 prompt + 8 completion tokens, then a stream of 2 + 4 (its usage asked of the runner by the gateway).
    const whole = await post(
      '/v1/completions',
      { model: 'lm-t', prompt: 'a b', max_tokens: 8 },
      counted.key,
    )
    expect(CompletionSchema.parse(await whole.json()).usage).toMatchObject({
      prompt_tokens: 2,
      completion_tokens: 8,
    })
    const stream = await post(
      '/v1/chat/completions',
      { model: 'lm-t', messages: [{ role: 'user', content: 'a b' }], max_tokens: 4, stream: true },
      counted.key,
    )
    await stream.text()
    // A refused request (an unknown model) counts nothing.
    await (await post('/v1/completions', { model: 'nope', prompt: 'a' }, counted.key)).text()
    const tokens = async () =>
      Object.fromEntries(
        (
          GatewayMetricsSchema.parse(
            await (
              await gw('/metrics', {
                headers: { ...bearer(TEST_ADMIN_SECRET), accept: 'application/json' },
              })
            ).json(),
          ).families.find((f) => f.name === 'twinserve_gateway_generation_tokens_total')?.samples ??
          []
        )
          .filter((x) => x.labels.tenant === 'tok-tenant')
          .map((x) => [`${x.labels.model} ${x.labels.kind}`, x.value]),
      )
    // The isolate flushes its counters to the registry shortly after (METRICS_FLUSH_MS).
    let got: Record<string, number> = {}
    for (let i = 0; i < 100 && (got['lm-t completion'] ?? 0) < 12; i++) {
      got = await tokens()
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(got).toEqual({ 'lm-t prompt': 4, 'lm-t completion': 12 })
    await retire(ids)
  })
})
