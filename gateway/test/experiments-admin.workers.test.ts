import { ExperimentListSchema, ExperimentSchema } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  adminCall,
  createExperiment,
  startExperiment,
  stopExperiment,
  twoArms,
} from './experiments-helpers.ts'
import { bearer, createKey, expectError, gw, migrate } from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

let inferKey: string
beforeAll(async () => {
  await migrate()
  inferKey = (await createKey({ tenant: 'adm', scopes: ['infer'], models: ['*'] })).key
})

describe('experiment admin API', () => {
  it('creates a draft, starts, lists and stops it; stopping is final', async () => {
    const e = await createExperiment(twoArms('m-admin-1', { name: 'twin vs shared' }))
    expect(e.status).toBe('draft')
    expect(e.id).toMatch(/^exp_[0-9a-f]{16}$/)
    expect(e.arms.map((a) => [a.name, a.buckets, a.status])).toEqual([
      ['base', 5000, 'active'],
      ['twin', 5000, 'active'],
    ])
    const running = await startExperiment(e.id)
    expect(running.status).toBe('running')
    expect(running.started_at).not.toBeNull()
    // Idempotent.
    expect((await startExperiment(e.id)).started_at).toBe(running.started_at)

    const list = ExperimentListSchema.parse(
      await (await adminCall('GET', '/admin/experiments?model=m-admin-1&status=running')).json(),
    )
    expect(list.experiments.map((x) => x.id)).toEqual([e.id])
    const one = ExperimentSchema.parse(
      await (await adminCall('GET', `/admin/experiments/${e.id}`)).json(),
    )
    expect(one.id).toBe(e.id)

    const res = await adminCall('POST', `/admin/experiments/${e.id}/stop`, {
      reason: 'enough data',
    })
    const stopped = ExperimentSchema.parse(await res.json())
    expect(stopped.status).toBe('stopped')
    expect(stopped.stop_reason).toMatch(/stopped by bootstrap: enough data/)
    const again = await expectError(
      await adminCall('POST', `/admin/experiments/${e.id}/start`),
      400,
      'INVALID_REQUEST',
    )
    expect(again.error).toMatch(/was stopped; its data is final/)
    await expectError(
      await adminCall('PUT', `/admin/experiments/${e.id}/weights`, { weights: { twin: 10 } }),
      400,
      'INVALID_REQUEST',
    )
  })

  // Issue #16, case 7: content-length 0 and no Content-Type (curl -X POST -d '') was a 415.
  it('stops with an empty body announced by content-length: 0 and no Content-Type', async () => {
    const e = await createExperiment(twoArms('m-admin-empty-stop'))
    await startExperiment(e.id)
    const res = await gw(`/admin/experiments/${e.id}/stop`, {
      method: 'POST',
      headers: { ...bearer(TEST_ADMIN_SECRET), 'content-length': '0' },
      // Bytes, not a string: a string body would get a text/plain Content-Type.
      body: new Uint8Array(0),
    })
    expect(res.status, await res.clone().text()).toBe(200)
    expect(ExperimentSchema.parse(await res.json()).status).toBe('stopped')
  })

  it('runs one experiment per model at a time', async () => {
    const a = await createExperiment(twoArms('m-admin-2'))
    const b = await createExperiment(twoArms('m-admin-2'))
    await startExperiment(a.id)
    const err = await expectError(
      await adminCall('POST', `/admin/experiments/${b.id}/start`),
      400,
      'INVALID_REQUEST',
    )
    expect(err.error).toContain(`already has a running experiment ('${a.id}')`)
    await stopExperiment(a.id)
    expect((await startExperiment(b.id)).status).toBe('running')
    await stopExperiment(b.id)
  })

  it('names what is wrong with a bad experiment', async () => {
    const cases: [unknown, RegExp][] = [
      [
        {
          ...twoArms('m-x'),
          arms: [
            { name: 'a', weight: 50, control: true },
            { name: 'b', weight: 60 },
          ],
        },
        /arms: weights add up to 110%/,
      ],
      [
        {
          ...twoArms('m-x'),
          arms: [
            { name: 'a', weight: 50 },
            { name: 'b', weight: 50 },
          ],
        },
        /exactly one arm must be the control/,
      ],
      [
        {
          ...twoArms('m-x'),
          arms: [
            { name: 'a', weight: 50, control: true },
            { name: 'b', weight: 50, parameters: { variant: 'x', top_k: 2 } },
          ],
        },
        /arms\.1\.parameters\.top_k: cannot be combined with variant/,
      ],
      [{ ...twoArms('m-x'), unit: 'cookie' }, /unit/],
      [{ ...twoArms('m-x'), guardrails: { max_error_rate: 2 } }, /guardrails\.max_error_rate/],
      [{ ...twoArms('Bad Model') }, /model/],
    ]
    for (const [body, message] of cases) {
      const e = await expectError(
        await adminCall('POST', '/admin/experiments', body),
        400,
        'INVALID_REQUEST',
      )
      expect(e.error).toMatch(message)
    }
    await expectError(await adminCall('GET', '/admin/experiments/exp_nope'), 400, 'INVALID_REQUEST')
    await expectError(
      await adminCall('GET', '/admin/experiments/exp_0000000000000000'),
      404,
      'NOT_FOUND',
    )
    await expectError(
      await adminCall('GET', '/admin/experiments?status=paused'),
      400,
      'INVALID_REQUEST',
    )
  })

  it('re-weights and appends arms, refusing totals over 100% and unknown or duplicate arms', async () => {
    const e = await createExperiment(
      twoArms('m-admin-3', {
        arms: [
          { name: 'base', weight: 40, control: true, parameters: { variant: 'shared' } },
          { name: 'twin', weight: 40, parameters: {} },
        ],
      }),
    )
    let res = await adminCall('POST', `/admin/experiments/${e.id}/arms`, {
      name: 'top2',
      weight: 20,
      parameters: { top_k: 2 },
    })
    expect(res.status, await res.clone().text()).toBe(201)
    const grown = ExperimentSchema.parse(await res.json())
    expect(grown.arms.map((a) => a.buckets)).toEqual([4000, 4000, 2000])
    await expectError(
      await adminCall('POST', `/admin/experiments/${e.id}/arms`, { name: 'more', weight: 1 }),
      400,
      'INVALID_REQUEST',
    )
    await expectError(
      await adminCall('POST', `/admin/experiments/${e.id}/arms`, { name: 'twin', weight: 0 }),
      400,
      'INVALID_REQUEST',
    )
    await expectError(
      await adminCall('POST', `/admin/experiments/${e.id}/arms`, {
        name: 'c2',
        weight: 0,
        control: true,
      }),
      400,
      'INVALID_REQUEST',
    )
    const unknown = await expectError(
      await adminCall('PUT', `/admin/experiments/${e.id}/weights`, { weights: { nope: 1 } }),
      400,
      'INVALID_REQUEST',
    )
    expect(unknown.error).toMatch(/no arm 'nope'/)
    await expectError(
      await adminCall('PUT', `/admin/experiments/${e.id}/weights`, { weights: { base: 50 } }),
      400,
      'INVALID_REQUEST',
    )
    res = await adminCall('PUT', `/admin/experiments/${e.id}/weights`, {
      weights: { base: 30, top2: 30 },
    })
    expect(ExperimentSchema.parse(await res.json()).arms.map((a) => a.weight)).toEqual([30, 40, 30])
  })

  it('a running thompson experiment keeps its split to itself', async () => {
    const e = await createExperiment(twoArms('m-admin-4', { mode: 'thompson' }))
    await startExperiment(e.id)
    const err = await expectError(
      await adminCall('PUT', `/admin/experiments/${e.id}/weights`, { weights: { twin: 10 } }),
      400,
      'INVALID_REQUEST',
    )
    expect(err.error).toMatch(/bandit sets its split/)
    await stopExperiment(e.id)
  })

  it('is for admin keys only', async () => {
    await expectError(
      await adminCall('GET', '/admin/experiments', undefined, inferKey),
      403,
      'FORBIDDEN',
    )
    await expectError(
      await gw('/admin/experiments', { headers: bearer('tsk_wrong') }),
      401,
      'UNAUTHENTICATED',
    )
    await expectError(
      await adminCall('POST', '/admin/experiments', twoArms('m-x'), inferKey),
      403,
      'FORBIDDEN',
    )
  })
})
