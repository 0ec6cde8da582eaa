import { type Experiment, ExperimentSchema, GuardrailsSchema } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  armAt,
  bucketCounts,
  initialAllocation,
  unitBucket,
} from '../src/experiments/allocation.ts'
import { guardrailViolation } from '../src/experiments/guardrails.ts'
import { gatewayLogs } from './capture-logs.ts'
import {
  adminCall,
  createExperiment,
  inferAs,
  results,
  startExperiment,
} from './experiments-helpers.ts'
import { createKey, migrate, register, registration, standIns } from './helpers.ts'

let key: string
beforeAll(async () => {
  await migrate()
  key = (await createKey({ tenant: 'gr', scopes: ['infer'], models: ['*'] })).key
})

async function experiment(id: string): Promise<Experiment> {
  return ExperimentSchema.parse(await (await adminCall('GET', `/admin/experiments/${id}`)).json())
}

/** Polls until `pred` holds (guardrails run after the exposures' write, off the request path). */
async function eventually(id: string, pred: (e: Experiment) => boolean): Promise<Experiment> {
  for (let i = 0; i < 100; i++) {
    const e = await experiment(id)
    if (pred(e)) return e
    await new Promise((r) => setTimeout(r, 30))
  }
  throw new Error(`condition not reached: ${JSON.stringify(await experiment(id))}`)
}

describe('guardrail verdicts (pure)', () => {
  const g = GuardrailsSchema.parse({
    max_error_rate: 0.1,
    max_p95_latency_ms: 200,
    min_samples: 10,
    window: 100,
  })
  const ok = { status: 200, latency_ms: 50 }
  it('says nothing before min_samples', () => {
    expect(guardrailViolation(g, Array(9).fill({ status: 500, latency_ms: 900 }))).toBeUndefined()
  })
  it('names the error rate and the limit', () => {
    const w = [
      ...Array(17).fill(ok),
      { status: 503, latency_ms: 5 },
      { status: 500, latency_ms: 5 },
      { status: 502, latency_ms: 5 },
    ]
    expect(guardrailViolation(g, w)).toBe(
      'error rate 0.1500 (3/20 answers 5xx) exceeds max_error_rate 0.1',
    )
    // 4xx are the callers' mistakes, not the arm's.
    expect(
      guardrailViolation(g, [
        ...Array(17).fill(ok),
        ...Array(3).fill({ status: 400, latency_ms: 5 }),
      ]),
    ).toBeUndefined()
  })
  it('names the p95 latency', () => {
    const w = [...Array(18).fill(ok), ...Array(2).fill({ status: 200, latency_ms: 450 })]
    expect(guardrailViolation(g, w)).toMatch(
      /^p95 latency 450 ms over the last 20 exposures exceeds max_p95_latency_ms 200$/,
    )
    expect(
      guardrailViolation(g, [...Array(19).fill(ok), { status: 200, latency_ms: 450 }]),
    ).toBeUndefined()
  })
})

describe('guardrails on live traffic (runner stand-ins)', () => {
  it('stops a slow arm, records why, and sends its units to the control', async () => {
    const model = 'm-guard-latency'
    const fast = await standIns.start('gr-fast', [model])
    const slow = await standIns.start('gr-slow', [model])
    await standIns.behave('gr-slow', { mode: 'delay', ms: 1200 })
    // Each arm asks for a variant only one of the runners lists, so each arm has its own runner.
    await register(registration('gr-fast', fast.url, [{ name: model, variants: ['fast'] }]))
    await register(registration('gr-slow', slow.url, [{ name: model, variants: ['slow'] }]))
    const e = await createExperiment({
      name: 'latency guardrail',
      model,
      unit: 'user_id',
      arms: [
        { name: 'fast', weight: 50, control: true, parameters: { variant: 'fast' } },
        { name: 'slow', weight: 50, parameters: { variant: 'slow' } },
      ],
      // Far apart, so that a loaded machine's queueing never pushes the fast arm over.
      guardrails: { max_p95_latency_ms: 800, min_samples: 3, window: 20 },
    })
    await startExperiment(e.id)
    // Users picked by their bucket: four in each arm (the assignment is deterministic).
    const alloc = initialAllocation(bucketCounts([50, 50]))
    const users = Array.from({ length: 40 }, (_, i) => `gr-user-${i}`)
    const inArm = (arm: number) =>
      users.filter((u) => armAt(alloc, unitBucket(e.salt, u)) === arm).slice(0, 4)
    const picked = [...inArm(0), ...inArm(1)]
    const armOf = new Map<string, string | null>()
    await Promise.all(
      picked.map(async (u) => {
        const res = await inferAs(model, key, u)
        expect(res.status).toBe(200)
        armOf.set(u, res.headers.get('x-twinserve-arm'))
      }),
    )
    expect([...armOf.values()].sort()).toEqual([
      'fast',
      'fast',
      'fast',
      'fast',
      'slow',
      'slow',
      'slow',
      'slow',
    ])
    const stopped = await eventually(e.id, (x) => x.arms[1]?.status === 'stopped')
    expect(stopped.status).toBe('running')
    expect(stopped.arms[0]?.status).toBe('active')
    expect(stopped.arms[1]?.stop_reason).toMatch(
      /^p95 latency \d+ ms over the last \d+ exposures exceeds max_p95_latency_ms 800$/,
    )
    expect(
      gatewayLogs().some((l) => l.event === 'experiment_guardrail_stop' && l.arm === 'slow'),
    ).toBe(true)

    // A unit of the stopped arm now gets the control's controls (the fast runner), outside the experiment.
    const user = [...armOf].find(([, a]) => a === 'slow')?.[0] ?? ''
    const before = (await standIns.stats('gr-fast')).infer
    const res = await inferAs(model, key, user)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-twinserve-arm')).toBeNull()
    expect((await standIns.stats('gr-fast')).infer).toBe(before + 1)
    const r = await results(e.id)
    expect(r.arms.map((a) => a.decision)).toEqual(['control', 'guardrail_stop'])
  }, 20_000)

  it('stops the whole experiment when the control crosses a guardrail', async () => {
    const model = 'm-guard-errors'
    const s = await standIns.start('gr-broken', [model])
    await standIns.behave('gr-broken', { mode: 'fail', status: 500 })
    await register(registration('gr-broken', s.url, [{ name: model }]))
    const e = await createExperiment({
      name: 'error guardrail',
      model,
      unit: 'user_id',
      arms: [
        { name: 'base', weight: 50, control: true, parameters: {} },
        { name: 'other', weight: 50, parameters: { top_k: 1 } },
      ],
      guardrails: { max_error_rate: 0.5, min_samples: 3, window: 10 },
    })
    await startExperiment(e.id)
    // Users picked by their bucket, six per arm: with the random salt, 12 arbitrary users left the control arm
    // under min_samples about 2 % of the time, and the guardrail never fired.
    const alloc = initialAllocation(bucketCounts([50, 50]))
    const users = Array.from({ length: 60 }, (_, i) => `gr-err-${i}`)
    const inArm = (arm: number) =>
      users.filter((u) => armAt(alloc, unitBucket(e.salt, u)) === arm).slice(0, 6)
    for (const u of [...inArm(0), ...inArm(1)]) {
      const res = await inferAs(model, key, u)
      expect(res.status).toBeGreaterThanOrEqual(500)
    }
    const stopped = await eventually(e.id, (x) => x.status === 'stopped')
    expect(stopped.stop_reason).toMatch(
      /^guardrail: control arm 'base' stopped \(error rate 1\.0000 \(\d+\/\d+ answers 5xx\) exceeds max_error_rate 0\.5\)$/,
    )
    expect(stopped.arms[0]?.status).toBe('stopped')
    // Nobody is enrolled any more.
    const res = await inferAs(model, key, inArm(0)[0] ?? 'gr-err-0')
    expect(res.headers.get('x-twinserve-arm')).toBeNull()
  }, 20_000)
})
