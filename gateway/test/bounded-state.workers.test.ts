/**
 * Module state that lives as long as the isolate must stay bounded however many ids pass through it (issue #16:
 * whole chaos runs were suspected of growing the gateway isolate until it was reset).
 */
import { env } from 'cloudflare:test'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadConfig } from '../src/config.ts'
import {
  checkGuardrailsThrottled,
  guardrailChecks,
  MAX_THROTTLED_EXPERIMENTS,
} from '../src/experiments/guardrails.ts'
import { Throttle } from '../src/util/throttle.ts'
import { migrate } from './helpers.ts'

beforeAll(migrate)

describe('Throttle', () => {
  it('lets a key run once per interval', () => {
    const t = new Throttle(10)
    expect(t.tryRun('a', 0, 100)).toBe(true)
    expect(t.tryRun('a', 50, 100)).toBe(false)
    expect(t.tryRun('b', 50, 100)).toBe(true)
    expect(t.tryRun('a', 100, 100)).toBe(true)
  })

  it('remembers at most maxKeys keys, however many run', () => {
    const t = new Throttle(100)
    for (let i = 0; i < 5_000; i++) t.tryRun(`id-${i}`, i, 1_000_000)
    expect(t.size).toBe(100)
    // The newest are the ones kept: they are still throttled.
    expect(t.tryRun('id-4999', 5_000, 1_000_000)).toBe(false)
  })

  it('drops keys past their interval before live ones', () => {
    const t = new Throttle(3)
    t.tryRun('old', 0, 100)
    t.tryRun('live-1', 150, 100)
    t.tryRun('live-2', 160, 100)
    // 'old' ran 170 ms ago (past its interval): it goes, both live ones stay throttled.
    expect(t.tryRun('new', 170, 100)).toBe(true)
    expect(t.size).toBe(3)
    expect(t.tryRun('live-1', 171, 100)).toBe(false)
    expect(t.tryRun('live-2', 171, 100)).toBe(false)
  })
})

describe('guardrail checks per experiment', () => {
  it('remember a bounded number of experiments', { timeout: 20_000 }, async () => {
    const config = loadConfig(env)
    const ids = Array.from({ length: MAX_THROTTLED_EXPERIMENTS + 50 }, (_, i) => `exp-bounded-${i}`)
    // Unknown ids: each check looks the experiment up in D1, finds none and is done.
    for (const id of ids) await checkGuardrailsThrottled(env, config, id)
    // Before the bound every id stayed for the isolate's life (a Map without eviction).
    expect(guardrailChecks.size).toBeLessThanOrEqual(MAX_THROTTLED_EXPERIMENTS)
    expect(guardrailChecks.size).toBeGreaterThan(0)
  })
})
