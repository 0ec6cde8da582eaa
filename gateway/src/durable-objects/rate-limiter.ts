/**
 * One Durable Object per API key (`RATE_LIMITER.getByName(keyId)`): its token bucket and daily quota. A single
 * object per key makes the count exact across every isolate and location, which the Workers Rate Limiting
 * binding (approximate, per location, no Retry-After) is not.
 * @module
 */
import { DurableObject } from 'cloudflare:workers'
import type { Bindings } from '../env.ts'
import {
  type BucketLimits,
  type BucketState,
  initialBucket,
  type TakeResult,
  takeToken,
} from '../lib/token-bucket.ts'

const STATE_KEY = 'bucket'

export type RateDecision =
  | { allowed: true; remaining: number }
  | { allowed: false; reason: 'rate' | 'quota'; retry_after_s: number }

export class RateLimiter extends DurableObject<Bindings> {
  async take(limits: BucketLimits): Promise<RateDecision> {
    const now = Date.now()
    const kv = this.ctx.storage.kv
    const prev = kv.get<BucketState>(STATE_KEY) ?? initialBucket(limits, now)
    const result: TakeResult = takeToken(prev, limits, now)
    // Synchronous KV on SQLite storage: the write commits with this call, before the answer leaves.
    kv.put(STATE_KEY, result.state)
    return result.allowed
      ? { allowed: true, remaining: result.remaining }
      : { allowed: false, reason: result.reason, retry_after_s: result.retryAfterS }
  }
}
