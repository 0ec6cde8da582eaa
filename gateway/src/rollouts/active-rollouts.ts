/**
 * Each model's rollout, cached per isolate for EXPERIMENT_CACHE_MS (as running experiments are), so that
 * inference reads D1 at most once per TTL per model — also for the models without one, which is every model
 * until a rollout is set. Admin changes and rollbacks made in this isolate forget the cache at once.
 * @module
 */
import type { GatewayConfig } from '../config.ts'
import { TtlCache } from '../util/ttl-cache.ts'
import { getRollout, type StoredRollout } from './rollout-store.ts'

const cache = new TtlCache<{ rollout: StoredRollout | undefined }>(1_000)

export async function activeRollout(
  env: Env,
  config: GatewayConfig,
  model: string,
): Promise<StoredRollout | undefined> {
  const now = Date.now()
  const ttl = config.EXPERIMENT_CACHE_MS
  if (ttl <= 0) return getRollout(env.DB, model)
  const hit = cache.getOrClaim(model, now)
  if (hit) return hit.rollout
  try {
    const rollout = await getRollout(env.DB, model)
    cache.set(model, { rollout }, now + ttl)
    return rollout
  } finally {
    cache.refreshed(model)
  }
}

export function forgetRollouts(): void {
  cache.clear()
}
