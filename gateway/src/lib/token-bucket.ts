/**
 * A token bucket plus a per-UTC-day quota, as pure functions over a small state, so the Durable Object that
 * holds one per API key stays a thin shell and the arithmetic is testable on its own.
 * @module
 */

export interface BucketState {
  /** Tokens left (fractional: refill is continuous). */
  tokens: number
  /** When `tokens` was last computed (ms since epoch). */
  updatedMs: number
  /** UTC day (days since epoch) that `dayCount` counts. */
  day: number
  dayCount: number
}

export interface BucketLimits {
  requestsPerSecond: number
  burst: number
  /** Requests per UTC day; undefined for none. */
  dailyQuota?: number | undefined
}

export type TakeResult =
  | { allowed: true; remaining: number; state: BucketState }
  | { allowed: false; reason: 'rate' | 'quota'; retryAfterS: number; state: BucketState }

const DAY_MS = 86_400_000

export function initialBucket(limits: BucketLimits, nowMs: number): BucketState {
  return { tokens: limits.burst, updatedMs: nowMs, day: Math.floor(nowMs / DAY_MS), dayCount: 0 }
}

/** Takes one token; a refused take changes nothing but the refill, so retrying later is fair. */
export function takeToken(prev: BucketState, limits: BucketLimits, nowMs: number): TakeResult {
  // A clock that steps back (another machine, NTP) must not mint tokens or go negative.
  const elapsedS = Math.max(0, nowMs - prev.updatedMs) / 1000
  const tokens = Math.min(limits.burst, prev.tokens + elapsedS * limits.requestsPerSecond)
  const day = Math.floor(nowMs / DAY_MS)
  const dayCount = day === prev.day ? prev.dayCount : 0
  const state: BucketState = { tokens, updatedMs: Math.max(nowMs, prev.updatedMs), day, dayCount }

  if (limits.dailyQuota !== undefined && dayCount >= limits.dailyQuota) {
    const retryAfterS = Math.max(1, Math.ceil(((day + 1) * DAY_MS - nowMs) / 1000))
    return { allowed: false, reason: 'quota', retryAfterS, state }
  }
  if (tokens < 1) {
    const retryAfterS = Math.max(1, Math.ceil((1 - tokens) / limits.requestsPerSecond))
    return { allowed: false, reason: 'rate', retryAfterS, state }
  }
  const next = { ...state, tokens: tokens - 1, dayCount: dayCount + 1 }
  return { allowed: true, remaining: Math.floor(next.tokens), state: next }
}
