/**
 * Each model's running experiment, cached per isolate for EXPERIMENT_CACHE_MS so that inference does not read
 * D1 (or the bandit object) per request. Thompson experiments carry the bandit's current allocation, fetched
 * with the experiment. Admin changes made through this isolate forget the cache at once; elsewhere they show
 * within the TTL.
 * @module
 */
import type { GatewayConfig } from '../config.ts'
import { TtlCache } from '../util/ttl-cache.ts'
import type { Allocation } from './allocation.ts'
import { banditFor } from './bandit.ts'
import { runningExperiment, type StoredExperiment } from './experiment-store.ts'

export interface ActiveExperiment {
  experiment: StoredExperiment
  /** The split in force: the experiment's own (fixed) or the bandit's (thompson). */
  allocation: Allocation
}

const cache = new TtlCache<{ active: ActiveExperiment | undefined }>(1_000)

export async function loadActiveExperiment(
  env: Env,
  model: string,
): Promise<ActiveExperiment | undefined> {
  const experiment = await runningExperiment(env.DB, model)
  if (!experiment) return undefined
  if (experiment.mode !== 'thompson') return { experiment, allocation: experiment.allocation }
  const bandit = await banditFor(env, experiment)
  return { experiment, allocation: bandit.allocation }
}

export async function activeExperiment(
  env: Env,
  config: GatewayConfig,
  model: string,
): Promise<ActiveExperiment | undefined> {
  const now = Date.now()
  const ttl = config.EXPERIMENT_CACHE_MS
  if (ttl <= 0) return loadActiveExperiment(env, model)
  const hit = cache.getOrClaim(model, now)
  if (hit) return hit.active
  try {
    const active = await loadActiveExperiment(env, model)
    cache.set(model, { active }, now + ttl)
    return active
  } finally {
    cache.refreshed(model)
  }
}

export function forgetActiveExperiments(): void {
  cache.clear()
}
