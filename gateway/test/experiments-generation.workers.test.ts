/**
 * A/B arms on generation (issue 14): a model's running experiment assigns /v1 completions, chat completions and
 * V2 generate[_stream] an arm, sticky per user (x-twinserve-user, or OpenAI's `user`), the arm's merge controls
 * replace the request's on the way to the runner (stand-ins over real HTTP record what they got), the answer
 * names the arm (headers; OpenAI bodies and a stream's first chunk in `twinserve`), and feedback rates a
 * completion by the `id` it came back with (real D1, the experiment's exposures).
 */
import { ChatCompletionChunkSchema, CompletionSchema, type Experiment } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  createExperiment,
  feedbackCall,
  results,
  sendFeedback,
  startExperiment,
} from './experiments-helpers.ts'
import { bearer, createKey, expectError, fleet, gw, migrate, standIns } from './helpers.ts'

const model = 'lm-ab'
let key: string
let runner: string
let experiment: Experiment
/** A user id assigned to each arm. */
const userOf: Record<string, string> = {}

const post = (path: string, body: unknown, headers: Record<string, string> = {}, token = key) =>
  gw(path, {
    method: 'POST',
    headers: { ...bearer(token), 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })

const dataOf = (text: string) =>
  text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice(6))

const lastBody = async () =>
  JSON.parse((await standIns.stats(runner)).last_generate_body) as Record<string, unknown>

const chat = (user?: string, extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'hello there' }],
  max_tokens: 3,
  ...(user === undefined ? {} : { user }),
  ...extra,
})

beforeAll(async () => {
  await migrate()
  key = (await createKey({ tenant: 'gen-ab', scopes: ['infer'], models: [model] })).key
  ;[runner = ''] = await fleet('gen-ab', 1, model)
  experiment = await createExperiment({
    name: 'mix vs router',
    model,
    unit: 'user_id',
    arms: [
      { name: 'router', weight: 50, control: true, parameters: {} },
      { name: 'mix', weight: 50, parameters: { experts: { a: 0.7, b: 0.3 } } },
    ],
  })
  await startExperiment(experiment.id)
  // Find one user per arm (the assignment hashes the user id with the experiment's salt).
  for (let i = 0; i < 64 && Object.keys(userOf).length < 2; i++) {
    const res = await post(
      '/v1/completions',
      { model, prompt: 'x', max_tokens: 1 },
      {
        'x-twinserve-user': `u-${i}`,
      },
    )
    expect(res.status, await res.clone().text()).toBe(200)
    await res.text()
    userOf[res.headers.get('x-twinserve-arm') ?? '?'] ??= `u-${i}`
  }
  expect(Object.keys(userOf).sort()).toEqual(['mix', 'router'])
})

describe('A/B arms on generation', () => {
  it('a chat completion (whole and streamed) is served by the user’s arm, named in headers and body', async () => {
    const user = userOf.mix ?? ''
    // OpenAI's `user` field is the unit when no x-twinserve-user header is sent: same user, same arm.
    const whole = await post('/v1/chat/completions', chat(user))
    const text = await whole.text()
    expect(whole.status, text).toBe(200)
    expect(whole.headers.get('x-twinserve-arm')).toBe('mix')
    expect(whole.headers.get('x-twinserve-experiment')).toBe(experiment.id)
    const body = JSON.parse(text) as { id: string; twinserve: Record<string, unknown> }
    expect(body.twinserve).toEqual({
      expert_weights: { a: 1 },
      arm: 'mix',
      experiment: experiment.id,
    })
    expect(body.id).toBe(`chatcmpl-${whole.headers.get('x-request-id')}`)
    // The arm's controls went to the runner in `twinserve`.
    expect((await lastBody()).twinserve).toEqual({ experts: { a: 0.7, b: 0.3 } })

    const streamed = await post('/v1/chat/completions', chat(user, { stream: true }))
    expect(streamed.status).toBe(200)
    expect(streamed.headers.get('x-twinserve-arm')).toBe('mix')
    const data = dataOf(await streamed.text())
    expect(data.at(-1)).toBe('[DONE]')
    const chunks = data.slice(0, -1).map((d) => ChatCompletionChunkSchema.parse(JSON.parse(d)))
    // The first chunk (the one with the applied weights) names the arm; the text is untouched.
    expect(chunks[0]?.twinserve).toEqual({
      expert_weights: { a: 1 },
      arm: 'mix',
      experiment: experiment.id,
    })
    expect(chunks.slice(1).every((c) => c.twinserve === undefined)).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('w0 w1 w2 ')

    // The control arm ({}: the router) forwards no controls at all.
    const control = await post('/v1/completions', {
      model,
      prompt: 'x',
      max_tokens: 2,
      user: userOf.router,
    })
    expect(control.headers.get('x-twinserve-arm')).toBe('router')
    expect(CompletionSchema.parse(await control.json()).twinserve?.arm).toBe('router')
    expect(await lastBody()).not.toHaveProperty('twinserve')
  })

  it('the header wins over `user`; own controls stay out (as for infer) unless an admin pins an arm', async () => {
    const res = await post(
      '/v1/completions',
      { model, prompt: 'x', user: userOf.router },
      {
        'x-twinserve-user': userOf.mix ?? '',
      },
    )
    expect(res.headers.get('x-twinserve-arm')).toBe('mix')
    await res.text()

    const own = { experts: { b: 1 } }
    const asSent = await post('/v1/completions', {
      model,
      prompt: 'x',
      user: userOf.mix,
      twinserve: own,
    })
    expect(asSent.status).toBe(200)
    expect(asSent.headers.get('x-twinserve-arm')).toBeNull()
    expect(CompletionSchema.parse(await asSent.json()).twinserve).toEqual({
      expert_weights: { a: 1 },
    })
    expect((await lastBody()).twinserve).toEqual(own)

    const admin = (await createKey({ tenant: 'gen-ab', scopes: ['infer', 'admin'], models: ['*'] }))
      .key
    const pinned = await post(
      '/v1/completions',
      { model, prompt: 'x', twinserve: own },
      { 'x-twinserve-arm': 'mix' },
      admin,
    )
    expect(pinned.headers.get('x-twinserve-arm')).toBe('mix')
    await pinned.text()
    expect((await lastBody()).twinserve).toEqual({ experts: { a: 0.7, b: 0.3 } })

    // A `user` the experiment cannot store as a unit is the caller's mistake, named in OpenAI's shape.
    const bad = await post('/v1/completions', { model, prompt: 'x', user: 'has spaces' })
    expect(bad.status).toBe(400)
    const e = (await bad.json()) as { error: { message: string; code: string } }
    expect(e.error.code).toBe('INVALID_REQUEST')
    expect(e.error.message).toMatch(/^user: /)
  })

  it('V2 generate and generate_stream: the arm replaces the merge controls, sampling keys stay', async () => {
    const res = await post(
      `/v2/models/${model}/generate`,
      { text_input: 'x', parameters: { max_tokens: 2, temperature: 0 } },
      { 'x-twinserve-user': userOf.mix ?? '' },
    )
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get('x-twinserve-arm')).toBe('mix')
    await res.text()
    expect((await lastBody()).parameters).toEqual({
      max_tokens: 2,
      temperature: 0,
      experts: { a: 0.7, b: 0.3 },
    })
    const streamed = await post(
      `/v2/models/${model}/generate_stream`,
      { text_input: 'x', parameters: { max_tokens: 2 } },
      { 'x-twinserve-user': userOf.router ?? '' },
    )
    expect(streamed.headers.get('x-twinserve-arm')).toBe('router')
    expect(dataOf(await streamed.text())).toHaveLength(2)
    expect((await lastBody()).parameters).toEqual({ max_tokens: 2 })
  })

  it('feedback rates a completion by its id (whole or streamed), or by x-request-id, for its arm', async () => {
    // Earlier exposures reach D1 within EXPOSURE_FLUSH_MS (20 ms here).
    await new Promise((r) => setTimeout(r, 100))
    const before = await results(experiment.id)
    const whole = await post('/v1/completions', { model, prompt: 'x', user: userOf.mix })
    const completion = CompletionSchema.parse(await whole.json())
    expect(completion.id).toMatch(/^cmpl-/)
    const rated = await sendFeedback(key, { request_id: completion.id, reward: 1 })
    expect(rated).toMatchObject({ experiment_id: experiment.id, arm: 'mix', reward: 1 })
    expect(rated.request_id).toBe(completion.id)
    // Final: the same rating again is a duplicate, by either id.
    const again = await sendFeedback(key, {
      request_id: whole.headers.get('x-request-id'),
      reward: 1,
    })
    expect(again.duplicate).toBe(true)

    // A stream's id is in every chunk; the exposure is written when the stream ends.
    const streamed = await post(
      '/v1/chat/completions',
      chat(userOf.router, { stream: true, max_tokens: 2 }),
    )
    const first = ChatCompletionChunkSchema.parse(
      JSON.parse(dataOf(await streamed.text())[0] ?? ''),
    )
    expect(first.id).toMatch(/^chatcmpl-/)
    expect(await sendFeedback(key, { request_id: first.id, reward: 0.25 })).toMatchObject({
      arm: 'router',
      reward: 0.25,
      duplicate: false,
    })

    // No prediction is recorded for text: a label is refused, naming the way out.
    const other = await post('/v1/completions', { model, prompt: 'x', user: userOf.mix })
    const otherId = CompletionSchema.parse(await other.json()).id
    const label = await feedbackCall(key, { request_id: otherId, label: 'good' })
    expect((await expectError(label, 400, 'INVALID_REQUEST')).error).toMatch(/send a reward/)
    // Another tenant cannot rate it (404, as for an unknown id).
    const stranger = (await createKey({ tenant: 'gen-ab-other', scopes: ['infer'], models: ['*'] }))
      .key
    await expectError(
      await feedbackCall(stranger, { request_id: otherId, reward: 1 }),
      404,
      'NOT_FOUND',
    )

    const after = await results(experiment.id)
    const arm = (r: typeof after, name: string) => r.arms.find((a) => a.arm === name)
    expect((arm(after, 'mix')?.n ?? 0) - (arm(before, 'mix')?.n ?? 0)).toBe(2)
    expect((arm(after, 'router')?.n ?? 0) - (arm(before, 'router')?.n ?? 0)).toBe(1)
    expect((arm(after, 'mix')?.feedback ?? 0) - (arm(before, 'mix')?.feedback ?? 0)).toBe(1)
    expect((arm(after, 'router')?.feedback ?? 0) - (arm(before, 'router')?.feedback ?? 0)).toBe(1)
  })

  it('a stream the client leaves and a refused generation are exposures too (the guardrails count them)', async () => {
    const counts = async () => {
      const r = await results(experiment.id)
      const mix = r.arms.find((a) => a.arm === 'mix')
      return { n: mix?.n ?? 0, errors: mix?.errors ?? 0 }
    }
    await new Promise((r) => setTimeout(r, 100))
    const before = await counts()
    await standIns.behave(runner, { mode: 'slow_tokens', ms: 50 })
    const left = await post(
      '/v1/chat/completions',
      chat(userOf.mix, { stream: true, max_tokens: 100 }),
    )
    expect(left.headers.get('x-twinserve-arm')).toBe('mix')
    const reader = left.body?.getReader()
    expect((await reader?.read())?.done).toBe(false)
    await reader?.cancel()
    await standIns.behave(runner, { mode: 'fail', status: 503 })
    const busy = await post('/v1/completions', { model, prompt: 'x', user: userOf.mix })
    expect(busy.status).toBe(503)
    // Error answers name the arm as well.
    expect(busy.headers.get('x-twinserve-arm')).toBe('mix')
    await busy.text()
    await standIns.behave(runner, { mode: 'ok' })
    let after = before
    for (let i = 0; i < 50 && after.n < before.n + 2; i++) {
      await new Promise((r) => setTimeout(r, 40))
      after = await counts()
    }
    expect(after).toEqual({ n: before.n + 2, errors: before.errors + 1 })
  })
})
