/**
 * A per-tenant quota on new materialised merges (issue #16, cost amplification). A `merge_method` request whose
 * recipe is not cached costs a full merge (7.5× a cached request on the demo package); a tenant varying its
 * recipe on every request would make the runner merge all the time. Each tenant gets a token bucket of
 * `perMinute` new merges (refilled continuously); a cached recipe costs nothing, and one new recipe is charged
 * once however many of its requests queue before the merge lands. The tenant is the gateway's signed word
 * (shared/src/signing.ts, `x-twinserve-tenant`); unsigned local requests share the tenant ''.
 * @module
 */
import { AppError } from '@twinserve/shared'

const MINUTE_MS = 60_000
/** Tenants whose buckets are full carry no state; beyond this many, those are dropped. */
const MAX_TRACKED_TENANTS = 10_000

export class MergeQuota {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()
  /** Recipe key → when it was charged: a recipe queued again before its merge lands is not charged twice. */
  private readonly charged = new Map<string, number>()

  /** @param perMinute new merges per tenant per minute; 0 turns the quota off */
  constructor(private readonly perMinute: number) {}

  /**
   * Charges `tenant` one new merge of `recipeKey`.
   * @throws AppError RATE_LIMITED (429, Retry-After) when the tenant's bucket is empty
   */
  charge(tenant: string, recipeKey: string, nowMs: number): void {
    if (this.perMinute === 0) return
    this.forget(nowMs)
    if (this.charged.has(recipeKey)) return
    const rate = this.perMinute / MINUTE_MS
    const b = this.buckets.get(tenant) ?? { tokens: this.perMinute, at: nowMs }
    b.tokens = Math.min(this.perMinute, b.tokens + (nowMs - b.at) * rate)
    b.at = nowMs
    if (b.tokens < 1) {
      this.buckets.set(tenant, b)
      throw new AppError(
        'RATE_LIMITED',
        `tenant '${tenant || '(unsigned)'}' has used its ${this.perMinute} new merge recipes per minute on this runner; reuse a recipe (cached merges are free) or wait`,
        { retryAfter: Math.ceil((1 - b.tokens) / rate / 1000) },
      )
    }
    b.tokens -= 1
    this.buckets.set(tenant, b)
    this.charged.set(recipeKey, nowMs)
  }

  private forget(nowMs: number): void {
    for (const [key, at] of this.charged) {
      if (nowMs - at < MINUTE_MS) break
      this.charged.delete(key)
    }
    if (this.buckets.size <= MAX_TRACKED_TENANTS) return
    const rate = this.perMinute / MINUTE_MS
    for (const [tenant, b] of this.buckets)
      if (b.tokens + (nowMs - b.at) * rate >= this.perMinute) this.buckets.delete(tenant)
  }
}
