import { AppError } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { MergeQuota } from './merge-quota.ts'

function refusal(f: () => void): AppError {
  try {
    f()
  } catch (err) {
    if (err instanceof AppError) return err
    throw err
  }
  throw new Error('not refused')
}

// Issue #16, case 8: a tenant varying its recipe on every request made the runner merge on every request.
describe('MergeQuota', () => {
  it('allows perMinute new recipes per tenant, then 429 with Retry-After; other tenants are unaffected', () => {
    const q = new MergeQuota(3)
    for (const k of ['k1', 'k2', 'k3']) q.charge('a', k, 0)
    const e = refusal(() => q.charge('a', 'k4', 0))
    expect(e.code).toBe('RATE_LIMITED')
    expect(e.status).toBe(429)
    expect(e.retryAfter).toBe(20)
    expect(e.message).toMatch(/tenant 'a' has used its 3 new merge recipes per minute/)
    expect(() => q.charge('b', 'k5', 0)).not.toThrow()
  })

  it('refills continuously', () => {
    const q = new MergeQuota(60)
    for (let i = 0; i < 60; i++) q.charge('a', `k${i}`, 0)
    expect(() => q.charge('a', 'next', 0)).toThrow()
    expect(() => q.charge('a', 'next', 1000)).not.toThrow()
  })

  it('charges one recipe once while it is pending, and 0 turns the quota off', () => {
    const q = new MergeQuota(1)
    q.charge('a', 'same', 0)
    expect(() => q.charge('a', 'same', 10)).not.toThrow()
    expect(() => q.charge('a', 'other', 10)).toThrow()
    const off = new MergeQuota(0)
    for (let i = 0; i < 1000; i++) off.charge('a', `k${i}`, 0)
  })
})
