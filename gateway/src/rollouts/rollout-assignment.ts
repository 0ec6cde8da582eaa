/**
 * Which version serves a caller under a rollout: sticky, as experiments assign arms (allocation.ts). The unit
 * (API key id, plus the x-twinserve-user id when sent) hashes with the rollout's id into one of the
 * EXPERIMENT_BUCKETS buckets; buckets below canary_percent's share go to the canary. Growing the percentage keeps
 * every unit already on the canary there; a rolled-back or promoted rollout has no canary share.
 * @module
 */
import { EXPERIMENT_BUCKETS, type RolloutArm } from '@twinserve/shared'
import { unitBucket } from '../experiments/allocation.ts'
import type { StoredRollout } from './rollout-store.ts'

export interface RolloutAssignment {
  arm: RolloutArm
  version: string
}

/** The rollout's unit for a caller: its key, narrowed to one end user when the request names one. */
export function rolloutUnit(keyId: string, user: string | undefined): string {
  return user === undefined ? keyId : `${keyId}/${user}`
}

export function assignVersion(r: StoredRollout, unit: string): RolloutAssignment {
  const threshold = Math.round((r.canary_percent * EXPERIMENT_BUCKETS) / 100)
  if (r.state === 'active' && r.canary !== null && unitBucket(r.id, unit) < threshold)
    return { arm: 'canary', version: r.canary }
  return { arm: 'stable', version: r.stable }
}
