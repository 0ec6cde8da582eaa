import { beforeAll, describe, expect, it } from 'vitest'
import { seededRng } from '../src/experiments/statistics/random.ts'
import {
  createExperiment,
  inferAs,
  results,
  sendFeedback,
  startExperiment,
} from './experiments-helpers.ts'
import { createKey, migrate, register, registration, standIns } from './helpers.ts'

const model = 'm-thompson'
let key: string
beforeAll(async () => {
  await migrate()
  key = (await createKey({ tenant: 'ts', scopes: ['infer'], models: ['*'] })).key
  const s = await standIns.start('ts-0', [model])
  await register(registration('ts-0', s.url, [{ name: model }]))
})

describe('Thompson-sampling experiments', () => {
  it('shift traffic toward the arm with better rewards, posterior in the bandit object', async () => {
    const e = await createExperiment({
      name: 'bandit',
      model,
      unit: 'user_id',
      mode: 'thompson',
      arms: [
        { name: 'weak', weight: 50, control: true, parameters: { top_k: 1 } },
        { name: 'strong', weight: 50, parameters: {} },
      ],
      bandit: { min_share: 5, update_every: 10 },
    })
    await startExperiment(e.id)
    const start = await results(e.id)
    expect(start.arms.map((a) => a.share)).toEqual([50, 50])
    expect(start.arms.map((a) => a.posterior)).toEqual([
      { alpha: 1, beta: 1, p_best: 0.5 },
      { alpha: 1, beta: 1, p_best: 0.5 },
    ])

    // Simulated users: the strong arm satisfies 80% of the time, the weak one 30%.
    const rng = seededRng(17)
    const rate = { weak: 0.3, strong: 0.8 }
    const serve = async (user: string) => {
      const res = await inferAs(model, key, user, { 'x-request-id': `ts-${user}` })
      expect(res.status).toBe(200)
      const arm = res.headers.get('x-twinserve-arm') as 'weak' | 'strong'
      return { user, arm }
    }
    for (let batch = 0; batch < 6; batch++) {
      const served = await Promise.all(
        Array.from({ length: 10 }, (_, i) => serve(`b${batch}-u${i}`)),
      )
      await Promise.all(
        served.map(({ user, arm }) =>
          sendFeedback(key, { request_id: `ts-${user}`, reward: rng() < rate[arm] ? 1 : 0 }),
        ),
      )
    }
    const after = await results(e.id)
    const strong = after.arms.find((a) => a.arm === 'strong')
    const weak = after.arms.find((a) => a.arm === 'weak')
    expect(strong?.posterior?.p_best).toBeGreaterThan(0.95)
    expect(strong?.share).toBeGreaterThan(80)
    expect(weak?.share).toBeGreaterThanOrEqual(5) // the floor keeps exploring
    // The posterior counts every reward (prior 1 + 1).
    const counted = after.arms.reduce(
      (s, a) => s + (a.posterior?.alpha ?? 0) + (a.posterior?.beta ?? 0) - 2,
      0,
    )
    expect(counted).toBeCloseTo(60, 6)

    // New users now land mostly on the strong arm once the isolate's cached split has expired and been refreshed:
    // one request refreshes an expired entry while concurrent ones keep the old split (stale-while-revalidate).
    await new Promise((r) => setTimeout(r, 1100))
    await serve('refresh')
    const fresh = await Promise.all(Array.from({ length: 30 }, (_, i) => serve(`fresh-${i}`)))
    expect(fresh.filter((f) => f.arm === 'strong').length).toBeGreaterThanOrEqual(20)
  }, 30_000)
})
