/**
 * The tokens one gateway isolate holds on lease from API keys' buckets (rate-limiter.ts), so
 * that most requests are admitted without a round trip to the key's Durable Object — on Cloudflare a call to
 * wherever that object lives, locally the largest cost per request after the Worker runtime itself.
 *
 * Correctness: every admitted request spends a token the bucket granted, and leased tokens count against the
 * bucket's burst until the isolate reports the lease finished (with its next take from that bucket) or it
 * lapses, so the limits hold exactly in aggregate (token-bucket.ts). What leasing costs: a token one isolate
 * holds cannot serve a request at another (a refusal there, bounded by the lease size for at most LEASE_TTL_MS).
 * Leases are sized to a small slice of the key's rate and burst; keys with a daily quota take one token at a
 * time so the quota is counted exactly; a refused request leases nothing.
 * @module
 */
import type { BucketLimits, FinishedLease } from './token-bucket.ts'

/** How long an isolate may spend leased tokens (counted from when it asked, so never past the bucket's view). */
export const LEASE_TTL_MS = 500
/** At most this many tokens per lease. */
export const MAX_LEASE = 32
/** A lease covers at most this much of the key's rate… */
export const LEASE_RATE_WINDOW_S = 0.1
/** …and at most this fraction of its burst. */
export const LEASE_BURST_FRACTION = 1 / 8

/** Tokens to ask for when this isolate holds none for a key (1: no lease). */
export function leaseSize(limits: BucketLimits): number {
  if (limits.dailyQuota !== undefined) return 1
  return Math.max(
    1,
    Math.min(
      MAX_LEASE,
      Math.floor(limits.requestsPerSecond * LEASE_RATE_WINDOW_S),
      Math.floor(limits.burst * LEASE_BURST_FRACTION),
    ),
  )
}

/** Identifies the limits a lease was granted under: a lease never outlives a change of limits. */
export function limitsKey(limits: BucketLimits): string {
  return `${limits.requestsPerSecond}/${limits.burst}/${limits.dailyQuota ?? ''}`
}

interface Lease {
  id: number
  tokens: number
  expiresAt: number
  limits: string
  /** The bucket's own tokens when the lease was granted (for x-ratelimit-remaining). */
  bucketRemaining: number
}

export class TokenLeases {
  private readonly leases = new Map<string, Lease>()
  /** Leases this isolate is done with, to report with its next take from the key's bucket. */
  private readonly finished = new Map<string, FinishedLease[]>()
  private readonly refilling = new Set<string>()

  /**
   * Spends one leased token for `keyId`; returns the remaining estimate (bucket at grant time plus tokens still
   * held), or undefined when no live lease under these limits has one.
   */
  take(keyId: string, limits: string, now: number): number | undefined {
    const l = this.leases.get(keyId)
    if (!l) return undefined
    if (l.expiresAt <= now || l.limits !== limits) {
      this.finish(keyId, l)
      return undefined
    }
    l.tokens -= 1
    // Spent: the next request asks the bucket for a fresh lease and reports this one done.
    if (l.tokens < 1) this.finish(keyId, l)
    return l.bucketRemaining + l.tokens
  }

  /** Tokens held for `keyId` under `limits` now. */
  held(keyId: string, limits: string, now: number): number {
    const l = this.leases.get(keyId)
    return l && l.expiresAt > now && l.limits === limits ? l.tokens : 0
  }

  /** Keeps lease `id` of `tokens` granted at `askedAt` (when the request for it left) for LEASE_TTL_MS. */
  add(
    keyId: string,
    limits: string,
    id: number,
    tokens: number,
    bucketRemaining: number,
    askedAt: number,
  ): void {
    if (this.leases.size > 1024) this.sweep(askedAt)
    // Only one refill is in flight per key, so no live lease should be here; if one is, it is given up.
    const old = this.leases.get(keyId)
    if (old) this.finish(keyId, old)
    this.leases.set(keyId, {
      id,
      tokens,
      expiresAt: askedAt + LEASE_TTL_MS,
      limits,
      bucketRemaining,
    })
  }

  /** The leases to report as finished with the next take from `keyId`'s bucket (handed over once). */
  takeFinished(keyId: string): FinishedLease[] {
    const f = this.finished.get(keyId) ?? []
    this.finished.delete(keyId)
    return f
  }

  /** Puts reports back when the take that carried them failed (they may still return tokens). */
  restoreFinished(keyId: string, reports: readonly FinishedLease[]): void {
    if (reports.length === 0) return
    this.finished.set(keyId, [...reports, ...(this.finished.get(keyId) ?? [])].slice(0, 16))
  }

  /**
   * Claims the one lease request allowed in flight per key, so concurrent requests that find no tokens do not
   * each pull a lease (they take single tokens meanwhile). Returns false when another request holds it.
   */
  beginRefill(keyId: string): boolean {
    if (this.refilling.has(keyId)) return false
    this.refilling.add(keyId)
    return true
  }

  endRefill(keyId: string): void {
    this.refilling.delete(keyId)
  }

  private finish(keyId: string, l: Lease): void {
    this.leases.delete(keyId)
    const list = this.finished.get(keyId) ?? []
    // Bounded: reports only return tokens early; a dropped one lapses in the bucket on its own.
    if (list.length < 16) list.push({ id: l.id, unused: Math.max(0, l.tokens) })
    this.finished.set(keyId, list)
  }

  private sweep(now: number): void {
    for (const [k, l] of this.leases) if (l.expiresAt <= now) this.finish(k, l)
    // Reports for keys this isolate no longer sees are dropped: their leases lapse in the bucket.
    if (this.finished.size > 1024) this.finished.clear()
  }
}

/** The isolate's leases (module state lives as long as the isolate). */
export const tokenLeases = new TokenLeases()
