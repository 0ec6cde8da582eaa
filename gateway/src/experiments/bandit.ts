/**
 * The isolate's side of a Thompson experiment's bandit object: set it up from the experiment (idempotent) and
 * read its state.
 * @module
 */
import { BucketRangeSchema } from '@twinserve/shared'
import { z } from 'zod'
import type { Allocation } from './allocation.ts'
import type { BanditView } from './experiment-bandit.ts'
import type { StoredExperiment } from './experiment-store.ts'

/** The bandit's state as an isolate sees it (RPC turns the allocation's tuples into plain arrays). */
export type BanditState = Omit<BanditView, 'allocation'> & { allocation: Allocation }

const AllocationSchema = z.array(BucketRangeSchema)

function typed(v: { allocation: number[][] } & Omit<BanditView, 'allocation'>): BanditState {
  return {
    version: v.version,
    arms: v.arms,
    rewards: v.rewards,
    allocation: AllocationSchema.parse(v.allocation),
  }
}

export function banditStub(env: Env, experimentId: string) {
  return env.EXPERIMENT_BANDIT.getByName(experimentId)
}

/** The bandit's state, set up from the experiment on first use. */
export async function banditFor(env: Env, e: StoredExperiment): Promise<BanditState> {
  const stub = banditStub(env, e.id)
  const state = await stub.state()
  if (state) return typed(state)
  return typed(
    await stub.init({
      arms: e.arms.map((a) => ({ name: a.name, active: a.status === 'active' })),
      enrolledPercent: e.arms.reduce((s, a) => s + a.weight, 0),
      allocation: e.allocation,
      minSharePercent: e.bandit.min_share,
      updateEvery: e.bandit.update_every,
    }),
  )
}
