/**
 * One Durable Object per API key (`RATE_LIMITER.getByName(keyId)`): its token bucket and daily quota. A single
 * object per key makes the count exact across every isolate and location, which the Workers Rate Limiting
 * binding (approximate, per location, no Retry-After) is not. Isolates take tokens in small leases
 * (token-lease.ts) so that most requests do not wait on this object.
 * @module
 */
import { DurableObject } from 'cloudflare:workers'
import {
  type BucketLimits,
  type BucketState,
  type FinishedLease,
  initialBucket,
  type TakeResult,
  takeTokens,
} from './token-bucket.ts'
import {
  chargeTokens,
  checkTokens,
  refilled,
  type TokenBudgetState,
  type TokenCheck,
} from './token-budget.ts'

const STATE_KEY = 'bucket'
/** The key's generated-text budget (token-budget.ts), beside its request bucket. */
const TOKENS_KEY = 'generated_tokens'

export type RateDecision =
  | { allowed: true; granted: number; lease_id?: number; remaining: number }
  | { allowed: false; reason: 'rate' | 'quota'; retry_after_s: number }

export class RateLimiter extends DurableObject<Env> {
  /**
   * Up to `want` tokens: the first for the caller's request, the rest a lease valid for `leaseTtlMs`, after
   * settling the caller's `finished` leases (see token-bucket.ts). Never more than the bucket holds, so a
   * refused caller is refused for real.
   */
  async lease(
    limits: BucketLimits,
    want: number,
    leaseTtlMs: number,
    finished: FinishedLease[] = [],
  ): Promise<RateDecision> {
    const now = Date.now()
    const kv = this.ctx.storage.kv
    const prev = kv.get<BucketState>(STATE_KEY) ?? initialBucket(limits, now)
    const result: TakeResult = takeTokens(
      prev,
      limits,
      now,
      Math.max(1, want),
      leaseTtlMs,
      finished,
    )
    // Synchronous KV on SQLite storage: the write commits with this call, before the answer leaves.
    kv.put(STATE_KEY, result.state)
    if (!result.allowed)
      return { allowed: false, reason: result.reason, retry_after_s: result.retryAfterS }
    return {
      allowed: true,
      granted: result.granted,
      remaining: result.remaining,
      ...(result.leaseId !== undefined ? { lease_id: result.leaseId } : {}),
    }
  }

  /** One token, no lease. */
  async take(limits: BucketLimits): Promise<RateDecision> {
    return this.lease(limits, 1, 0)
  }

  /** Whether a generation call of this key may start (its token budget is above zero). */
  async checkTokens(tokensPerMinute: number): Promise<TokenCheck> {
    const kv = this.ctx.storage.kv
    const state = refilled(kv.get<TokenBudgetState>(TOKENS_KEY), tokensPerMinute, Date.now())
    kv.put(TOKENS_KEY, state)
    return checkTokens(state, tokensPerMinute)
  }

  /** Takes a finished answer's prompt + completion tokens out of the budget; the tokens left (may be < 0). */
  async chargeTokens(tokensPerMinute: number, tokens: number): Promise<number> {
    const kv = this.ctx.storage.kv
    const state = chargeTokens(
      refilled(kv.get<TokenBudgetState>(TOKENS_KEY), tokensPerMinute, Date.now()),
      tokens,
    )
    kv.put(TOKENS_KEY, state)
    return state.level
  }
}
