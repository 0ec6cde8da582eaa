/**
 * A rollout as the admin API and the dashboard show it: the stored row with each arm's counts, error rate and
 * latency, and the always-valid p-value of the canary's error rate against the stable's.
 * @module
 */
import type { Rollout } from '@twinserve/shared'
import { rollbackVerdict } from './rollback-decision.ts'
import { armStats, publicRollout, recentOutcomes, type StoredRollout } from './rollout-store.ts'

export async function rolloutReport(db: D1Database, r: StoredRollout): Promise<Rollout> {
  const window = r.guardrails.window
  const stable = await recentOutcomes(db, r.id, 'stable', window)
  const canary = await recentOutcomes(db, r.id, 'canary', window)
  const arms = {
    stable: await armStats(db, r, 'stable', stable),
    canary: await armStats(db, r, 'canary', canary),
  }
  return publicRollout(r, arms, rollbackVerdict(r, canary, stable).pValue)
}
