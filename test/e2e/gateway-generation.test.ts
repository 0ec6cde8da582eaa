/**
 * Generation through the real gateway (workerd under wrangler dev) from a real runner process serving the LM
 * zoo's package with `--generation lm-twin=zoo/lm/models` (issue 14): the official `openai` client streams a
 * chat completion from the GATEWAY with a mix in the body; a client that leaves mid-stream frees the runner's
 * sequence; an unknown model is 404, `max_tokens: 0` is 400, and a key's token limit answers 429.
 */
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CreatedApiKeySchema, OpenAIErrorBodySchema } from '@twinserve/shared'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type E2eGateway, startE2eGateway, startGatewayRunner } from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const MODEL = 'lm-twin'
let gw: E2eGateway
let runner: RunnerProcess
let key: string

beforeAll(async () => {
  gw = await startE2eGateway()
  key = await gw.createKey()
  runner = await startGatewayRunner(gw, {
    packages: [join(REPO, 'zoo/lm/package')],
    runnerId: 'lm-a',
    args: ['--generation', `${MODEL}=${join(REPO, 'zoo/lm/models')}`],
    startTimeoutMs: 60_000,
  })
}, 120_000)
afterAll(async () => {
  await runner?.stop()
  await gw?.stop()
})

const post = (path: string, body: unknown, token = key, signal?: AbortSignal) =>
  fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  })

describe('generation through the gateway', () => {
  it('the official openai client streams a chat completion from the gateway with a mix', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key })
    const models = await client.models.list()
    expect(models.data.map((m) => m.id)).toContain(MODEL)
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
    let chunks = 0
    let weights: unknown
    let usage: unknown
    for await (const chunk of stream) {
      chunks += 1
      weights ??= (chunk as { twinserve?: { expert_weights: unknown } }).twinserve?.expert_weights
      text += chunk.choices[0]?.delta.content ?? ''
      usage ??= chunk.usage
    }
    expect(chunks).toBeGreaterThan(2)
    expect(weights).toMatchObject({
      fortunes: expect.closeTo(0.7, 5),
      emails: expect.closeTo(0.3, 5),
    })
    expect(usage).toMatchObject({ completion_tokens: expect.any(Number) })
    // Greedy: the whole answer through the gateway is the streamed text.
    const whole = await client.chat.completions.create({ ...params, stream: false })
    expect(whole.choices[0]?.message.content).toBe(text)
  })

  it('cancel mid-stream, then served again; unknown model 404; max_tokens 0 → 400', async () => {
    const abort = new AbortController()
    const res = await post(
      '/v1/completions',
      { model: MODEL, prompt: 'Once', max_tokens: 200, temperature: 0.8, seed: 3, stream: true },
      key,
      abort.signal,
    )
    expect(res.status).toBe(200)
    const reader = res.body?.getReader()
    await reader?.read()
    abort.abort()
    // The gateway cancels its runner call (the workerd test shows the runner's stream cancelled; the runner's
    // own test that a cancelled stream frees its sequence); the runner keeps serving.
    let status = 0
    for (let i = 0; i < 60 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 50))
      const again = await post('/v1/completions', { model: MODEL, prompt: 'Once', max_tokens: 4 })
      status = again.status
      await again.text()
    }
    expect(status).toBe(200)

    const unknown = await post('/v1/completions', { model: 'no-such-lm', prompt: 'x' })
    expect(unknown.status).toBe(404)
    expect(OpenAIErrorBodySchema.parse(await unknown.json()).error.type).toBe('not_found_error')
    const zero = await post('/v1/chat/completions', {
      model: MODEL,
      messages: [{ role: 'user', content: 'x' }],
      max_tokens: 0,
    })
    expect(zero.status).toBe(400)
    expect(OpenAIErrorBodySchema.parse(await zero.json()).error.message).toMatch(/max_tokens/)
  })

  it('a key with tokens_per_minute is refused (429 + Retry-After) once its tokens are spent', async () => {
    const made = await fetch(`${gw.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        tenant: 'tpm',
        scopes: ['infer'],
        models: [MODEL],
        tokens_per_minute: 20,
      }),
    })
    const limited = CreatedApiKeySchema.parse(await made.json()).key
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: limited, maxRetries: 0 })
    let refused: unknown
    for (let i = 0; i < 10 && !refused; i++) {
      try {
        const s = await client.completions.create({
          model: MODEL,
          prompt: 'Once upon',
          max_tokens: 12,
          stream: true,
        })
        for await (const _ of s) {
          // drain
        }
      } catch (err) {
        refused = err
      }
    }
    expect(refused).toBeInstanceOf(OpenAI.RateLimitError)
    const e = refused as InstanceType<typeof OpenAI.RateLimitError>
    expect(e.status).toBe(429)
    expect(Number(e.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1)
  })
})
