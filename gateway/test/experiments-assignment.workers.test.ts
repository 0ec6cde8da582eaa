import { EXPERIMENT_BUCKETS, InferenceResponseSchema } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type Allocation,
  allocationCounts,
  armAt,
  bucketCounts,
  initialAllocation,
  reallocate,
  unitBucket,
} from '../src/experiments/allocation.ts'
import { seededRng } from '../src/experiments/statistics/random.ts'
import {
  adminCall,
  createExperiment,
  inferAs,
  startExperiment,
  stopExperiment,
  twoArms,
} from './experiments-helpers.ts'
import {
  createKey,
  expectError,
  inferBody,
  migrate,
  register,
  registration,
  standIns,
} from './helpers.ts'

/** Owner of each bucket (-1: none). */
function owners(a: Allocation): number[] {
  const own = new Array<number>(EXPERIMENT_BUCKETS).fill(-1)
  for (let b = 0; b < EXPERIMENT_BUCKETS; b++) own[b] = armAt(a, b) ?? -1
  return own
}

describe('allocation (pure)', () => {
  it('turns percentages into bucket counts that never exceed the buckets', () => {
    expect(bucketCounts([50, 50])).toEqual([5000, 5000])
    expect(bucketCounts([12.345, 0])).toEqual([1235, 0])
    expect(bucketCounts([33.335, 33.335, 33.33]).reduce((s, c) => s + c, 0)).toBe(
      EXPERIMENT_BUCKETS,
    )
    expect(bucketCounts([10, 20]).reduce((s, c) => s + c, 0)).toBe(3000)
  })

  it('hashes units deterministically, per experiment salt', () => {
    expect(unitBucket('salt-a', 'user-1')).toBe(unitBucket('salt-a', 'user-1'))
    const differs = Array.from({ length: 50 }, (_, i) => `u${i}`).filter(
      (u) => unitBucket('salt-a', u) !== unitBucket('salt-b', u),
    )
    expect(differs.length).toBeGreaterThan(45)
  })

  it('splits units as configured, within statistical tolerance', () => {
    const weights = [20, 30, 25]
    const a = initialAllocation(bucketCounts(weights))
    const n = 40_000
    const seen = [0, 0, 0, 0] // arms 0..2, then "not enrolled"
    for (let u = 0; u < n; u++) {
      const arm = armAt(a, unitBucket('split-salt', `user-${u}`))
      seen[arm ?? 3] = (seen[arm ?? 3] ?? 0) + 1
    }
    const expected = [...weights, 25].map((w) => (w / 100) * n)
    const chi2 = seen.reduce((s, o, i) => s + (o - (expected[i] ?? 0)) ** 2 / (expected[i] ?? 1), 0)
    // χ² with 3 degrees of freedom: 16.27 is its 0.999 quantile.
    expect(chi2).toBeLessThan(16.27)
  })

  it('weight changes move only units of arms that shrink, and only as many as they give up', () => {
    const rng = seededRng(21)
    let alloc = initialAllocation(bucketCounts([30, 30, 10]))
    let counts = allocationCounts(alloc, 3)
    for (let step = 0; step < 20; step++) {
      // Random new weights adding up to at most 100%.
      const raw = [rng(), rng(), rng(), rng()]
      const total = raw.reduce((s, x) => s + x, 0)
      const target = bucketCounts(raw.slice(0, 3).map((x) => (100 * x) / total))
      const before = owners(alloc)
      const next = reallocate(alloc, target)
      const after = owners(next)
      expect(allocationCounts(next, 3)).toEqual(target)
      let moved = 0
      for (let b = 0; b < EXPERIMENT_BUCKETS; b++) {
        const was = before[b] as number
        if (was === after[b]) continue
        moved++
        // A bucket leaves its arm only if that arm shrank.
        if (was >= 0) expect(target[was] ?? 0).toBeLessThan(counts[was] ?? 0)
      }
      const shrink = counts.reduce((s, c, i) => s + Math.max(0, c - (target[i] ?? 0)), 0)
      const grow = counts.reduce((s, c, i) => s + Math.max(0, (target[i] ?? 0) - c), 0)
      // Buckets that change owner: those given up, plus unowned ones taken (never more than needed).
      expect(moved).toBeLessThanOrEqual(shrink + grow)
      alloc = next
      counts = target
    }
  })

  it('an appended arm takes unowned buckets first: no existing unit moves', () => {
    const a = initialAllocation(bucketCounts([40, 40]))
    const b = reallocate(a, bucketCounts([40, 40, 15]))
    const before = owners(a)
    const after = owners(b)
    for (let i = 0; i < EXPERIMENT_BUCKETS; i++)
      if ((before[i] as number) >= 0) expect(after[i]).toBe(before[i])
    expect(allocationCounts(b, 3)).toEqual([4000, 4000, 1500])
  })
})

describe('assignment through the gateway (runner stand-in)', () => {
  let key: string
  let adminInferKey: string
  const models = ['m-assign-1', 'm-assign-2', 'm-assign-3', 'm-assign-4']
  beforeAll(async () => {
    await migrate()
    key = (await createKey({ tenant: 'assign', scopes: ['infer'], models: ['*'] })).key
    adminInferKey = (
      await createKey({ tenant: 'assign', scopes: ['infer', 'admin'], models: ['*'] })
    ).key
    const s = await standIns.start('assign-0', models)
    await register(
      registration(
        'assign-0',
        s.url,
        models.map((name) => ({ name, variants: ['shared', 'ties'] })),
      ),
    )
  })

  /** The arm (or null) each user gets, checking that the forwarded controls are the arm's. */
  async function armsOf(
    model: string,
    users: string[],
    armParams: Record<string, unknown>,
  ): Promise<Map<string, string | null>> {
    const one = async (u: string): Promise<[string, string | null]> => {
      const res = await inferAs(model, key, u)
      const text = await res.text()
      expect(res.status, text).toBe(200)
      const arm = res.headers.get('x-twinserve-arm')
      const got = JSON.parse(
        String(InferenceResponseSchema.parse(JSON.parse(text)).parameters?.received_parameters),
      )
      expect(got).toEqual(arm === null ? {} : armParams[arm])
      return [u, arm]
    }
    const out = new Map<string, string | null>()
    // A few users at a time, as real traffic arrives.
    for (let i = 0; i < users.length; i += 10)
      for (const [u, arm] of await Promise.all(users.slice(i, i + 10).map(one))) out.set(u, arm)
    return out
  }

  it('is sticky, forwards the arm’s controls, and keeps units when weights change', async () => {
    const model = models[0] ?? ''
    const params = { base: { variant: 'ties' }, twin: {} }
    const e = await createExperiment(
      twoArms(model, {
        arms: [
          { name: 'base', weight: 30, control: true, parameters: params.base },
          { name: 'twin', weight: 30, parameters: params.twin },
        ],
      }),
    )
    await startExperiment(e.id)
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`)
    const first = await armsOf(model, users, params)
    // Sticky: the same answer again, for every user.
    expect(await armsOf(model, users.slice(0, 30), params)).toEqual(
      new Map(users.slice(0, 30).map((u) => [u, first.get(u) ?? null])),
    )
    const tally = (m: Map<string, string | null>, arm: string | null) =>
      [...m.values()].filter((a) => a === arm).length
    expect(tally(first, 'base')).toBeGreaterThan(6)
    expect(tally(first, 'twin')).toBeGreaterThan(6)
    expect(tally(first, null)).toBeGreaterThan(12)

    // Twin grows from the unenrolled buckets: nobody in base or twin moves.
    let res = await adminCall('PUT', `/admin/experiments/${e.id}/weights`, {
      weights: { twin: 60 },
    })
    expect(res.status, await res.clone().text()).toBe(200)
    const grown = await armsOf(model, users, params)
    for (const u of users) if (first.get(u) !== null) expect(grown.get(u)).toBe(first.get(u))
    expect(tally(grown, 'twin')).toBeGreaterThan(tally(first, 'twin'))

    // Base shrinks: twin users stay; only base users can leave.
    res = await adminCall('PUT', `/admin/experiments/${e.id}/weights`, { weights: { base: 10 } })
    expect(res.status, await res.clone().text()).toBe(200)
    const shrunk = await armsOf(model, users, params)
    for (const u of users) {
      if (grown.get(u) === 'twin') expect(shrunk.get(u)).toBe('twin')
      if (shrunk.get(u) === 'base') expect(grown.get(u)).toBe('base')
    }
    expect(tally(shrunk, 'base')).toBeLessThan(tally(grown, 'base'))
    await stopExperiment(e.id)
  }, 30_000)

  it('leaves out requests without a unit or with their own merge controls; refuses a malformed user id', async () => {
    const model = models[1] ?? ''
    const e = await createExperiment(twoArms(model))
    await startExperiment(e.id)
    let res = await inferAs(model, key, undefined)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-twinserve-arm')).toBeNull()
    const own = { top_k: 2 }
    res = await inferAs(model, key, 'user-1', {}, inferBody([1, 2], own))
    const body = InferenceResponseSchema.parse(await res.json())
    expect(res.headers.get('x-twinserve-arm')).toBeNull()
    expect(JSON.parse(String(body.parameters?.received_parameters))).toEqual(own)
    await expectError(await inferAs(model, key, 'has space'), 400, 'INVALID_REQUEST')
    await stopExperiment(e.id)
    // Stopped: nobody is enrolled any more.
    res = await inferAs(model, key, 'user-1')
    expect(res.headers.get('x-twinserve-arm')).toBeNull()
  })

  it('api_key units: each key keeps its arm', async () => {
    const model = models[2] ?? ''
    const e = await createExperiment(twoArms(model, { unit: 'api_key' }))
    await startExperiment(e.id)
    const keys = [
      key,
      ...(await Promise.all(
        [1, 2, 3, 4, 5].map(
          async (i) => (await createKey({ tenant: `k${i}`, scopes: ['infer'], models: ['*'] })).key,
        ),
      )),
    ]
    for (const k of keys) {
      const a = (await inferAs(model, k, 'ignored')).headers.get('x-twinserve-arm')
      expect(a === 'base' || a === 'twin').toBe(true)
      for (let i = 0; i < 3; i++)
        expect((await inferAs(model, k, `other-${i}`)).headers.get('x-twinserve-arm')).toBe(a)
    }
    await stopExperiment(e.id)
  })

  it('x-twinserve-arm pins an arm for admin keys only', async () => {
    const model = models[3] ?? ''
    const e = await createExperiment(twoArms(model))
    await startExperiment(e.id)
    await expectError(
      await inferAs(model, key, 'u', { 'x-twinserve-arm': 'twin' }),
      403,
      'FORBIDDEN',
    )
    for (const arm of ['base', 'twin', 'base']) {
      const res = await inferAs(model, adminInferKey, 'same-user', { 'x-twinserve-arm': arm })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-twinserve-arm')).toBe(arm)
    }
    await expectError(
      await inferAs(model, adminInferKey, 'u', { 'x-twinserve-arm': 'nope' }),
      400,
      'INVALID_REQUEST',
    )
    await stopExperiment(e.id)
    // No running experiment: nothing to pin.
    await expectError(
      await inferAs(model, adminInferKey, 'u', { 'x-twinserve-arm': 'twin' }),
      400,
      'INVALID_REQUEST',
    )
  })
})
