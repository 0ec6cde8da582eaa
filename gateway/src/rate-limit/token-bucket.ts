/**
 * A token bucket plus a per-UTC-day quota, as pure functions over a small state, so the Durable Object that
 * holds one per API key stays a thin shell and the arithmetic is testable on its own.
 *
 * Leases: a take may hand out several tokens at once (`want` > 1); those beyond the first are a lease that the
 * caller (a gateway isolate) spends locally for up to `leaseTtlMs`, so most requests need no round trip to the
 * bucket. Until the caller reports a lease finished (with its next take) or it lapses, its tokens count against
 * the bucket's capacity (refill stops at burst − outstanding), so tokens in the bucket plus tokens out on lease
 * never exceed the burst: leasing never admits more than the plain bucket would. Tokens a finished lease did
 * not use go back to the bucket; those of a lease that lapses unreported are lost (stricter, never looser).
 * @module
 */

export interface BucketLease {
  id: number
  tokens: number
  expiresMs: number
}

export interface BucketState {
  /** Tokens left (fractional: refill is continuous). */
  tokens: number
  /** When `tokens` was last computed (ms since epoch). */
  updatedMs: number
  /** UTC day (days since epoch) that `dayCount` counts. */
  day: number
  dayCount: number
  /** Leases not yet reported finished (absent in states written before leases existed). */
  leases?: BucketLease[]
  nextLeaseId?: number
}

export interface BucketLimits {
  requestsPerSecond: number
  burst: number
  /** Requests per UTC day; undefined for none. */
  dailyQuota?: number | undefined
}

/** A lease its holder is done with, and how many of its tokens it did not use. */
export interface FinishedLease {
  id: number
  unused: number
}

export type TakeResult =
  | {
      allowed: true
      /** Tokens granted: one for this request, the rest leased (`leaseId`). */
      granted: number
      leaseId?: number
      remaining: number
      state: BucketState
    }
  | { allowed: false; reason: 'rate' | 'quota'; retryAfterS: number; state: BucketState }

const DAY_MS = 86_400_000

export function initialBucket(limits: BucketLimits, nowMs: number): BucketState {
  return { tokens: limits.burst, updatedMs: nowMs, day: Math.floor(nowMs / DAY_MS), dayCount: 0 }
}

/**
 * Takes between 1 and `want` tokens (as many as the bucket and the quota allow); with more than one, all but
 * the first become a lease that lapses after `leaseTtlMs`. `finished` leases are settled first. A refused take
 * changes nothing but the refill and the settled leases, so retrying later is fair.
 */
export function takeTokens(
  prev: BucketState,
  limits: BucketLimits,
  nowMs: number,
  want = 1,
  leaseTtlMs = 0,
  finished: readonly FinishedLease[] = [],
): TakeResult {
  // A clock that steps back (another machine, NTP) must not mint tokens or go negative.
  const elapsedS = Math.max(0, nowMs - prev.updatedMs) / 1000
  let returned = 0
  const leases = (prev.leases ?? []).filter((l) => {
    if (l.expiresMs <= nowMs) return false
    const done = finished.find((f) => f.id === l.id)
    if (done) returned += Math.max(0, Math.min(l.tokens, done.unused))
    return !done
  })
  const leased = leases.reduce((a, l) => a + l.tokens, 0)
  const cap = Math.max(0, limits.burst - leased)
  const tokens = Math.min(cap, prev.tokens + returned + elapsedS * limits.requestsPerSecond)
  const day = Math.floor(nowMs / DAY_MS)
  const dayCount = day === prev.day ? prev.dayCount : 0
  const state: BucketState = {
    tokens,
    updatedMs: Math.max(nowMs, prev.updatedMs),
    day,
    dayCount,
    ...(leases.length > 0 ? { leases } : {}),
    ...(prev.nextLeaseId !== undefined ? { nextLeaseId: prev.nextLeaseId } : {}),
  }

  if (limits.dailyQuota !== undefined && dayCount >= limits.dailyQuota) {
    const retryAfterS = Math.max(1, Math.ceil(((day + 1) * DAY_MS - nowMs) / 1000))
    return { allowed: false, reason: 'quota', retryAfterS, state }
  }
  if (tokens < 1) {
    let retryAfterS = Math.max(1, Math.ceil((1 - tokens) / limits.requestsPerSecond))
    // Leases hold the whole burst (it was lowered under them): nothing refills before the first one lapses.
    if (cap < 1 && leases.length > 0) {
      const lapse = Math.min(...leases.map((l) => l.expiresMs)) - nowMs
      retryAfterS = Math.max(retryAfterS, Math.ceil(lapse / 1000))
    }
    return { allowed: false, reason: 'rate', retryAfterS, state }
  }
  const quotaLeft = limits.dailyQuota === undefined ? want : limits.dailyQuota - dayCount
  const granted = Math.max(1, Math.min(Math.floor(want), Math.floor(tokens), quotaLeft))
  const next: BucketState = { ...state, tokens: tokens - granted, dayCount: dayCount + granted }
  if (granted === 1)
    return { allowed: true, granted, remaining: Math.floor(next.tokens), state: next }
  const leaseId = state.nextLeaseId ?? 1
  next.leases = [...leases, { id: leaseId, tokens: granted - 1, expiresMs: nowMs + leaseTtlMs }]
  next.nextLeaseId = leaseId + 1
  return { allowed: true, granted, leaseId, remaining: Math.floor(next.tokens), state: next }
}

/** Takes one token (no lease). */
export function takeToken(prev: BucketState, limits: BucketLimits, nowMs: number): TakeResult {
  return takeTokens(prev, limits, nowMs)
}
