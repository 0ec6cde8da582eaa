import {
  type CreatedApiKey,
  GuardrailsSchema,
  type Rollout,
  RolloutListSchema,
  RolloutSchema,
  type RunnerRegistration,
} from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { rollbackVerdict } from '../src/rollouts/rollback-decision.ts'
import { assignVersion, rolloutUnit } from '../src/rollouts/rollout-assignment.ts'
import type { StoredRollout } from '../src/rollouts/rollout-store.ts'
import { gatewayLogs } from './capture-logs.ts'
import { adminCall, inferAs } from './experiments-helpers.ts'
import { createKey, expectError, migrate, register, registration, standIns } from './helpers.ts'

const VERSION_HEADER = 'x-twinserve-model-version'
let key: CreatedApiKey

beforeAll(async () => {
  await migrate()
  key = await createKey({ tenant: 'ro', scopes: ['infer'], models: ['*'] })
})

/** A stand-in announcing `model` at `version` (in `group`). */
async function runnerAt(id: string, model: string, version: string, group?: string) {
  const s = await standIns.start(id, [model])
  const reg: RunnerRegistration = registration(id, s.url, [{ name: model }], {
    ...(group ? { group } : {}),
  })
  reg.models = reg.models.map((m) => ({ ...m, version }))
  await register(reg)
  return s
}

async function rollout(model: string): Promise<Rollout> {
  const res = await adminCall('GET', `/admin/models/${model}/rollout`)
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return RolloutSchema.parse(JSON.parse(text))
}

async function setRollout(model: string, body: unknown): Promise<Rollout> {
  const res = await adminCall('PUT', `/admin/models/${model}/rollout`, body)
  const text = await res.text()
  expect(res.status, text).toBe(200)
  return RolloutSchema.parse(JSON.parse(text))
}

async function eventually(model: string, pred: (r: Rollout) => boolean): Promise<Rollout> {
  for (let i = 0; i < 150; i++) {
    const r = await rollout(model)
    if (pred(r)) return r
    await new Promise((res) => setTimeout(res, 30))
  }
  throw new Error(`condition not reached: ${JSON.stringify(await rollout(model))}`)
}

const stored = (over: Partial<StoredRollout>): StoredRollout => ({
  model: 'm',
  id: 'salt-1',
  stable: 'v1',
  canary: 'v2',
  canary_percent: 30,
  group: null,
  guardrails: GuardrailsSchema.parse({ max_error_rate: 0.1, min_samples: 10, window: 100 }),
  alpha: 0.05,
  state: 'active',
  reason: null,
  created_at: '2026-12-05T00:00:00.000Z',
  updated_at: '2026-12-05T00:00:00.000Z',
  ...over,
})

describe('rollout admin API', () => {
  it('refuses bad input with a 400 that names the field', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ canary: 'b', canary_percent: 10 }, /stable/],
      [{ stable: 'a', canary: 'b', canary_percent: 150 }, /canary_percent/],
      [{ stable: 'a', canary_percent: 20 }, /canary: canary_percent 20 needs a canary version/],
      [
        { stable: 'a', canary: 'a', canary_percent: 20 },
        /canary: canary 'a' is the stable version/,
      ],
      [{ stable: 'a', canary_percent: 0, group: 'Bad Group' }, /group/],
      [{ stable: 'a', canary_percent: 0, guardrails: { max_error_rate: 2 } }, /max_error_rate/],
      [{ stable: 'a', canary_percent: 0, surprise: 1 }, /surprise/],
    ]
    for (const [body, message] of cases) {
      const err = await expectError(
        await adminCall('PUT', '/admin/models/ro-bad/rollout', body),
        400,
        'INVALID_REQUEST',
      )
      expect(err.error).toMatch(message)
    }
    await expectError(
      await adminCall('PUT', '/admin/models/Not_A_Model!/rollout', {
        stable: 'a',
        canary_percent: 0,
      }),
      400,
      'INVALID_REQUEST',
    )
    await expectError(await adminCall('GET', '/admin/models/ro-none/rollout'), 404, 'NOT_FOUND')
    // A model no runner has served, or a stable version no runner has announced, would route to nobody.
    await expectError(
      await adminCall('PUT', '/admin/models/ro-none/rollout', { stable: 'v1', canary_percent: 0 }),
      404,
      'NOT_FOUND',
    )
    await runnerAt('ro-bad-0', 'ro-bad', 'v1')
    const typo = await expectError(
      await adminCall('PUT', '/admin/models/ro-bad/rollout', { stable: 'v9', canary_percent: 0 }),
      400,
      'INVALID_REQUEST',
    )
    expect(typo.error).toBe(
      "stable: version 'v9' of model 'ro-bad' was never announced by a runner (announced: v1)",
    )
    await expectError(
      await adminCall('POST', '/admin/models/ro-none/rollout/promote'),
      404,
      'NOT_FOUND',
    )
    // An infer key is not an admin key.
    await expectError(
      await adminCall('GET', '/admin/models/ro-none/rollout', undefined, key.key),
      403,
      'FORBIDDEN',
    )
  })

  it('keeps the rollout id while only the percentage changes, and starts a new one for a new canary', async () => {
    await runnerAt('ro-ids-0', 'ro-ids', 'v1')
    const a = await setRollout('ro-ids', { stable: 'v1', canary: 'v2', canary_percent: 10 })
    expect(a).toMatchObject({ state: 'active', canary_percent: 10, group: null, reason: null })
    expect(a.guardrails).toMatchObject({ max_error_rate: 0.05, min_samples: 50, window: 500 })
    const b = await setRollout('ro-ids', { stable: 'v1', canary: 'v2', canary_percent: 40 })
    expect(b.id).toBe(a.id)
    const c = await setRollout('ro-ids', { stable: 'v1', canary: 'v3', canary_percent: 40 })
    expect(c.id).not.toBe(a.id)
    const list = RolloutListSchema.parse(await (await adminCall('GET', '/admin/rollouts')).json())
    expect(list.rollouts.find((r) => r.model === 'ro-ids')?.canary).toBe('v3')
  })
})

describe('sticky assignment', () => {
  it('puts canary_percent of the units on the canary, the same ones every time, and more as it grows', () => {
    const units = Array.from({ length: 4000 }, (_, i) => rolloutUnit('key-1', `user-${i}`))
    const at = (percent: number) =>
      units.map((u) => assignVersion(stored({ canary_percent: percent }), u).version)
    const ten = at(10)
    const share = ten.filter((v) => v === 'v2').length / units.length
    expect(share).toBeGreaterThan(0.08)
    expect(share).toBeLessThan(0.12)
    expect(at(10)).toEqual(ten)
    // Growing to 50%: every unit on the canary at 10% stays there.
    const fifty = at(50)
    ten.forEach((v, i) => {
      if (v === 'v2') expect(fifty[i]).toBe('v2')
    })
    // Another rollout (another id) shuffles units independently.
    const other = units.map((u) => assignVersion(stored({ id: 'salt-2' }), u).version)
    expect(other).not.toEqual(at(30))
    // Rolled back or promoted: everyone on stable.
    for (const state of ['rolled_back', 'promoted'] as const)
      expect(new Set(units.map((u) => assignVersion(stored({ state }), u).version))).toEqual(
        new Set(['v1']),
      )
  })

  it('routes each caller to the runners of its version, names it, and keeps it', async () => {
    const model = 'ro-route'
    await runnerAt('ro-route-stable', model, 'v1')
    await runnerAt('ro-route-canary', model, 'v2')
    const r = await setRollout(model, { stable: 'v1', canary: 'v2', canary_percent: 50 })
    const users = Array.from({ length: 16 }, (_, i) => `ro-user-${i}`)
    const expected = (u: string) =>
      assignVersion(stored({ id: r.id, canary_percent: 50 }), rolloutUnit(key.id, u)).version
    expect(new Set(users.map(expected))).toEqual(new Set(['v1', 'v2']))
    for (const u of users.slice(0, 8)) {
      for (let k = 0; k < 2; k++) {
        const res = await inferAs(model, key.key, u)
        expect(res.status, await res.clone().text()).toBe(200)
        const v = expected(u)
        expect(res.headers.get(VERSION_HEADER)).toBe(v)
        const runner = v === 'v1' ? 'ro-route-stable' : 'ro-route-canary'
        expect(res.headers.get('x-twinserve-runner')).toBe(runner)
        expect((await standIns.stats(runner)).last_path).toBe(
          `/v2/models/${model}/versions/${v}/infer`,
        )
      }
    }
  })

  it('leaves a model without a rollout as it was: unversioned path, no version header', async () => {
    const model = 'ro-plain'
    await runnerAt('ro-plain-0', model, 'v1')
    const res = await inferAs(model, key.key, 'someone')
    expect(res.status).toBe(200)
    expect(res.headers.get(VERSION_HEADER)).toBeNull()
    expect((await standIns.stats('ro-plain-0')).last_path).toBe(`/v2/models/${model}/infer`)
  })

  it('targets one runner group when the rollout names it', async () => {
    const model = 'ro-group'
    await runnerAt('ro-group-a', model, 'v1', 'blue')
    await runnerAt('ro-group-b', model, 'v1')
    await setRollout(model, { stable: 'v1', canary_percent: 0, group: 'blue' })
    for (let i = 0; i < 6; i++) {
      const res = await inferAs(model, key.key, `g-${i}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-twinserve-runner')).toBe('ro-group-a')
    }
  })
})

describe('rollback decision (pure)', () => {
  const ok = (ts: number) => ({ ts, status: 200, latency_ms: 20 })
  const err = (ts: number) => ({ ts, status: 500, latency_ms: 20 })
  const r = stored({})

  it('waits for min_samples, then names the guardrail', () => {
    expect(
      rollbackVerdict(
        r,
        Array.from({ length: 9 }, (_, i) => err(i)),
        [],
      ).reason,
    ).toBe(undefined)
    const canary = [...Array.from({ length: 16 }, (_, i) => ok(i)), err(17), err(18), err(19)]
    expect(rollbackVerdict(r, canary, []).reason).toBe(
      'guardrail: canary error rate 0.1579 (3/19 answers 5xx) exceeds max_error_rate 0.1',
    )
  })

  it('never counts a caller 4xx as an error', () => {
    const canary = Array.from({ length: 40 }, (_, i) => ({ ts: i, status: 400, latency_ms: 5 }))
    const stable = Array.from({ length: 40 }, (_, i) => ok(i))
    const v = rollbackVerdict(r, canary, stable)
    expect(v.reason).toBeUndefined()
    expect(v.pValue).toBe(1)
  })

  it('rolls back on the always-valid test when the canary errs more than stable, under the guardrail', () => {
    // No error-rate guardrail; the canary fails 1 in 4, stable never.
    const g = GuardrailsSchema.parse({ min_samples: 10, window: 400 })
    const canary = Array.from({ length: 200 }, (_, i) => (i % 4 === 0 ? err(2 * i) : ok(2 * i)))
    const stable = Array.from({ length: 200 }, (_, i) => ok(2 * i + 1))
    const v = rollbackVerdict({ guardrails: g, alpha: 0.05 }, canary, stable)
    expect(v.pValue).toBeLessThan(0.05)
    expect(v.reason).toMatch(/^always-valid test: canary error rate 0\.2500 over 200 requests/)
    // Equal error rates: no verdict.
    const same = rollbackVerdict(
      { guardrails: g, alpha: 0.05 },
      canary,
      canary.map((s) => ({ ...s, ts: s.ts + 1 })),
    )
    expect(same.reason).toBeUndefined()
  })
})

describe('automatic rollback on live traffic (runner stand-ins)', () => {
  it('rolls a failing canary back by itself, records why, and sends everyone to stable', async () => {
    const model = 'ro-rollback'
    await runnerAt('ro-rb-stable', model, 'v1')
    await runnerAt('ro-rb-canary', model, 'v2')
    await standIns.behave('ro-rb-canary', { mode: 'fail', status: 500 })
    const r = await setRollout(model, {
      stable: 'v1',
      canary: 'v2',
      canary_percent: 50,
      guardrails: { max_error_rate: 0.2, min_samples: 5, window: 50 },
    })
    const users = Array.from({ length: 40 }, (_, i) => `rb-user-${i}`)
    const canaryUsers = users.filter(
      (u) =>
        assignVersion(stored({ id: r.id, canary_percent: 50 }), rolloutUnit(key.id, u)).arm ===
        'canary',
    )
    expect(canaryUsers.length).toBeGreaterThan(5)
    const answers = await Promise.all(
      users.map(async (u) => {
        const res = await inferAs(model, key.key, u)
        return { u, status: res.status, version: res.headers.get(VERSION_HEADER) }
      }),
    )
    // Only canary users see the canary's failures (a rollback mid-burst may already send late ones to stable):
    // its 500s, or a 503 once its runner's breaker has opened on them mid-burst (no v2 runner left to try).
    for (const a of answers)
      if (a.status >= 500) {
        expect([500, 503]).toContain(a.status)
        expect(a.version).toBe('v2')
      } else expect(a).toMatchObject({ status: 200, version: 'v1' })
    expect(answers.filter((a) => a.status >= 500).length).toBeGreaterThanOrEqual(5)
    const after = await eventually(model, (x) => x.state === 'rolled_back')
    expect(after.canary_percent).toBe(0)
    expect(after.reason).toMatch(/^guardrail: canary error rate 1\.0000 \(\d+\/\d+ answers 5xx\)/)
    expect(after.arms.canary.errors).toBeGreaterThanOrEqual(5)
    expect(after.arms.stable.errors).toBe(0)
    expect(gatewayLogs().some((l) => l.event === 'rollout_rolled_back' && l.model === model)).toBe(
      true,
    )
    for (const u of canaryUsers) {
      const res = await inferAs(model, key.key, u)
      expect(res.status).toBe(200)
      expect(res.headers.get(VERSION_HEADER)).toBe('v1')
    }
    // Rolling back again changes nothing; promoting what was rolled back is refused.
    const again = await adminCall('POST', `/admin/models/${model}/rollout/rollback`)
    expect(RolloutSchema.parse(await again.json()).reason).toBe(after.reason)
    await expectError(
      await adminCall('POST', `/admin/models/${model}/rollout/promote`),
      400,
      'INVALID_REQUEST',
    )
  }, 20_000) // 90 requests and a rollback: well over vitest's default 5 s when other test files share the 2 cores

  it('promotes a healthy canary: it becomes stable and serves everyone', async () => {
    const model = 'ro-promote'
    await runnerAt('ro-pr-stable', model, 'v1')
    await runnerAt('ro-pr-canary', model, 'v2')
    await setRollout(model, { stable: 'v1', canary: 'v2', canary_percent: 25 })
    const res = await adminCall('POST', `/admin/models/${model}/rollout/promote`)
    const p = RolloutSchema.parse(await res.json())
    expect(p).toMatchObject({ state: 'promoted', stable: 'v2', canary: null, canary_percent: 0 })
    expect(p.reason).toMatch(/^promoted by /)
    for (let i = 0; i < 6; i++) {
      const r = await inferAs(model, key.key, `pr-${i}`)
      expect(r.status).toBe(200)
      expect(r.headers.get(VERSION_HEADER)).toBe('v2')
    }
  })
})
