import { env } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import {
  addExposure,
  type ExposureRecord,
  flushExposures,
} from '../src/experiments/exposure-buffer.ts'
import { recordFeedback } from '../src/experiments/feedback.ts'
import {
  createExperiment,
  feedbackCall,
  inferAs,
  results,
  sendFeedback,
  startExperiment,
  stopExperiment,
  twoArms,
} from './experiments-helpers.ts'
import { createKey, expectError, migrate, register, registration, standIns } from './helpers.ts'

// The stand-in answers one output per input, `sum_<input>` = the sum of its values, shape [1]: a [1]-shaped FP64
// output is one row of one class, so its "prediction" (argmax) is always class 0 — label 0 is right, 1 wrong.

const model = 'm-feedback'
let key: string
let otherTenant: string
let sameTenantOtherModel: string
let adminOnly: string
let experimentId: string

beforeAll(async () => {
  await migrate()
  key = (await createKey({ tenant: 'fb', scopes: ['infer'], models: [model] })).key
  otherTenant = (await createKey({ tenant: 'fb-other', scopes: ['infer'], models: ['*'] })).key
  sameTenantOtherModel = (
    await createKey({ tenant: 'fb', scopes: ['infer'], models: ['m-elsewhere'] })
  ).key
  adminOnly = (await createKey({ tenant: 'fb', scopes: ['admin'] })).key
  const s = await standIns.start('fb-0', [model])
  await register(registration('fb-0', s.url, [{ name: model }]))
  experimentId = (
    await createExperiment(
      twoArms(model, {
        arms: [
          { name: 'base', weight: 50, control: true, parameters: { variant: 'shared' } },
          { name: 'twin', weight: 50, parameters: {} },
        ],
      }),
    )
  ).id
  await startExperiment(experimentId)
})

/** An exposed request: its id and arm. */
async function exposed(user: string, requestId: string): Promise<string> {
  const res = await inferAs(model, key, user, { 'x-request-id': requestId })
  expect(res.status, await res.clone().text()).toBe(200)
  const arm = res.headers.get('x-twinserve-arm')
  expect(arm).not.toBeNull()
  expect(res.headers.get('x-twinserve-experiment')).toBe(experimentId)
  return arm ?? ''
}

describe('POST /v1/feedback', () => {
  it('attaches a reward to the caller’s own exposure, right after the response', async () => {
    const arm = await exposed('fb-user-1', 'fb-req-1')
    const r = await sendFeedback(key, { request_id: 'fb-req-1', reward: 0.75 })
    expect(r).toEqual({
      request_id: 'fb-req-1',
      experiment_id: experimentId,
      arm,
      reward: 0.75,
      duplicate: false,
    })
    const res = await results(experimentId)
    const row = res.arms.find((a) => a.arm === arm)
    expect(row?.feedback).toBe(1)
    expect(row?.reward?.mean).toBe(0.75)
  })

  it('compares a label with the recorded prediction', async () => {
    await exposed('fb-user-2', 'fb-req-2')
    expect((await sendFeedback(key, { request_id: 'fb-req-2', label: 0 })).reward).toBe(1)
    await exposed('fb-user-3', 'fb-req-3')
    expect((await sendFeedback(key, { request_id: 'fb-req-3', label: '1' })).reward).toBe(0)
    await exposed('fb-user-4', 'fb-req-4')
    const e = await expectError(
      await feedbackCall(key, { request_id: 'fb-req-4', label: [0, 0] }),
      400,
      'INVALID_REQUEST',
    )
    expect(e.error).toMatch(/predicted 1 row\(s\); send one label, got 2/)
  })

  it('finds an exposure the timed flush has taken out of the buffer but not yet written', async () => {
    // The race docs/generate.md's run once lost: the answer's exposure left the buffer in the timed flush a moment
    // before the feedback arrived, so the feedback's own flush found nothing to write and read D1 too early.
    const config = loadConfig(env)
    let answered: (r: ExposureRecord) => void = () => undefined
    addExposure(
      new Promise<ExposureRecord>((resolve) => {
        answered = resolve
      }),
    )
    const timed = flushExposures(env, config) // takes the record; its insert waits for the answer's end
    const feedback = recordFeedback(
      env,
      config,
      {
        key_id: 'k',
        tenant: 'fb',
        scopes: ['infer'],
        models: [model],
        rate_limit: null,
        daily_quota: null,
        tokens_per_minute: null,
      },
      { request_id: 'fb-race', reward: 0.5 },
    )
    answered({
      tenant: 'fb',
      request_id: 'fb-race',
      experiment_id: experimentId,
      arm: 'twin',
      unit_id: 'fb-user-race',
      key_id: 'k',
      model,
      pinned: false,
      ts: Date.now(),
      latency_ms: 1,
      status: 200,
      runner_id: 'fb-0',
      prediction: null,
      completion_id: null,
    })
    expect(await feedback).toMatchObject({ request_id: 'fb-race', arm: 'twin', reward: 0.5 })
    await timed
  })

  it('is final: the same value again is a duplicate, a different one is refused', async () => {
    await exposed('fb-user-5', 'fb-req-5')
    expect((await sendFeedback(key, { request_id: 'fb-req-5', reward: 1 })).duplicate).toBe(false)
    expect((await sendFeedback(key, { request_id: 'fb-req-5', reward: 1 })).duplicate).toBe(true)
    const e = await expectError(
      await feedbackCall(key, { request_id: 'fb-req-5', reward: 0 }),
      400,
      'INVALID_REQUEST',
    )
    expect(e.error).toMatch(/already has feedback \(reward 1\)/)
  })

  it('refuses unknown and foreign request ids alike (404), and leaves them untouched', async () => {
    await exposed('fb-user-6', 'fb-req-6')
    await expectError(
      await feedbackCall(key, { request_id: 'never-made', reward: 1 }),
      404,
      'NOT_FOUND',
    )
    // Another tenant cannot see or touch it.
    await expectError(
      await feedbackCall(otherTenant, { request_id: 'fb-req-6', reward: 1 }),
      404,
      'NOT_FOUND',
    )
    // Same tenant, but a key that does not cover the model.
    await expectError(
      await feedbackCall(sameTenantOtherModel, { request_id: 'fb-req-6', reward: 1 }),
      404,
      'NOT_FOUND',
    )
    // The owner still can: nothing was attached.
    expect((await sendFeedback(key, { request_id: 'fb-req-6', reward: 0 })).duplicate).toBe(false)
    // A request outside any experiment has no exposure either.
    const res = await inferAs(model, key, undefined, { 'x-request-id': 'fb-unexposed' })
    expect(res.headers.get('x-twinserve-arm')).toBeNull()
    await expectError(
      await feedbackCall(key, { request_id: 'fb-unexposed', reward: 1 }),
      404,
      'NOT_FOUND',
    )
  })

  it('needs a key with the infer scope, and a valid body', async () => {
    await expectError(
      await feedbackCall('tsk_nope', { request_id: 'x', reward: 1 }),
      401,
      'UNAUTHENTICATED',
    )
    await expectError(
      await feedbackCall(adminOnly, { request_id: 'fb-req-1', reward: 1 }),
      403,
      'FORBIDDEN',
    )
    for (const body of [
      { request_id: 'x', reward: 2 },
      { request_id: 'x' },
      { request_id: 'x', reward: 1, label: 1 },
      { reward: 1 },
    ])
      await expectError(await feedbackCall(key, body), 400, 'INVALID_REQUEST')
  })

  it('pinned requests are recorded but stay out of the statistics', async () => {
    const admin = (await createKey({ tenant: 'fb', scopes: ['infer', 'admin'], models: ['*'] })).key
    const before = await results(experimentId)
    const res = await inferAs(model, admin, 'fb-pinned', {
      'x-twinserve-arm': 'twin',
      'x-request-id': 'fb-pinned-1',
    })
    expect(res.headers.get('x-twinserve-arm')).toBe('twin')
    expect((await sendFeedback(admin, { request_id: 'fb-pinned-1', reward: 1 })).arm).toBe('twin')
    const after = await results(experimentId)
    const twin = (r: typeof after) => r.arms.find((a) => a.arm === 'twin')
    expect(twin(after)?.n).toBe(twin(before)?.n)
    expect(twin(after)?.feedback).toBe(twin(before)?.feedback)
  })

  it('a stopped experiment still takes feedback for its exposures', async () => {
    await exposed('fb-user-7', 'fb-req-7')
    await stopExperiment(experimentId)
    expect((await sendFeedback(key, { request_id: 'fb-req-7', reward: 1 })).experiment_id).toBe(
      experimentId,
    )
  })
})
