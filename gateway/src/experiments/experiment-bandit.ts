/**
 * One Durable Object per Thompson-sampling experiment (`EXPERIMENT_BANDIT.getByName(experimentId)`): the Beta
 * posterior of each arm's mean reward and the bucket allocation derived from it. Feedback updates the posterior;
 * every `update_every` rewards the split is recomputed from each arm's probability of being best (with a floor)
 * and the buckets move as little as possible (allocation.ts), so most units keep their arm between updates.
 * Isolates read the allocation through their experiment cache, never per request.
 * @module
 */
import { DurableObject } from 'cloudflare:workers'
import { type Allocation, bucketCounts, reallocate } from './allocation.ts'
import { randomRng } from './statistics/random.ts'
import {
  type BetaPosterior,
  PRIOR,
  probabilityBest,
  sharesWithFloor,
  updatePosterior,
} from './statistics/thompson.ts'

const STATE_KEY = 'bandit'

interface BanditArm {
  name: string
  active: boolean
  posterior: BetaPosterior
  pBest: number
}

interface BanditState {
  arms: BanditArm[]
  /** Percent of units enrolled (the experiment's total weight), split among the active arms. */
  enrolledPercent: number
  /** Fraction of the enrolled units every active arm keeps. */
  floor: number
  updateEvery: number
  sinceUpdate: number
  allocation: Allocation
  version: number
}

export interface BanditInit {
  arms: { name: string; active: boolean }[]
  enrolledPercent: number
  /** The experiment's configured allocation: the bandit starts from it. */
  allocation: Allocation
  minSharePercent: number
  updateEvery: number
}

export interface BanditView {
  version: number
  allocation: Allocation
  arms: { name: string; active: boolean; alpha: number; beta: number; p_best: number }[]
  rewards: number
}

function view(s: BanditState): BanditView {
  return {
    version: s.version,
    allocation: s.allocation,
    arms: s.arms.map((a) => ({
      name: a.name,
      active: a.active,
      alpha: a.posterior.alpha,
      beta: a.posterior.beta,
      p_best: a.pBest,
    })),
    rewards: s.arms.reduce((n, a) => n + a.posterior.alpha + a.posterior.beta - 2, 0),
  }
}

/** Recomputes P(best) of the active arms and moves buckets to match (inactive arms get none). */
function rebalance(s: BanditState): void {
  const active = s.arms.filter((a) => a.active)
  const pBest = probabilityBest(
    active.map((a) => a.posterior),
    randomRng(),
  )
  const shares = sharesWithFloor(pBest, s.floor)
  let k = 0
  for (const a of s.arms) a.pBest = a.active ? (pBest[k++] ?? 0) : 0
  k = 0
  const percents = s.arms.map((a) => (a.active ? (shares[k++] ?? 0) * s.enrolledPercent : 0))
  s.allocation = reallocate(s.allocation, bucketCounts(percents))
  s.sinceUpdate = 0
  s.version += 1
}

export class ExperimentBandit extends DurableObject<Env> {
  private load(): BanditState | undefined {
    return this.ctx.storage.kv.get<BanditState>(STATE_KEY)
  }

  private save(s: BanditState): void {
    // Synchronous KV on SQLite storage: committed with this call, before the answer leaves.
    this.ctx.storage.kv.put(STATE_KEY, s)
  }

  /** Sets the bandit up once (later calls return the existing state: a restart must not forget rewards). */
  async init(input: BanditInit): Promise<BanditView> {
    const existing = this.load()
    if (existing) return view(existing)
    const activeCount = input.arms.filter((a) => a.active).length
    const s: BanditState = {
      arms: input.arms.map((a) => ({
        name: a.name,
        active: a.active,
        posterior: { ...PRIOR },
        pBest: a.active && activeCount > 0 ? 1 / activeCount : 0,
      })),
      enrolledPercent: input.enrolledPercent,
      floor: input.minSharePercent / 100,
      updateEvery: input.updateEvery,
      sinceUpdate: 0,
      allocation: input.allocation,
      version: 1,
    }
    this.save(s)
    return view(s)
  }

  async state(): Promise<BanditView | undefined> {
    const s = this.load()
    return s ? view(s) : undefined
  }

  /** Adds rewards (in [0, 1]) to the arms' posteriors; re-splits traffic every `updateEvery` rewards. */
  async observe(rewards: { arm: string; reward: number }[]): Promise<BanditView | undefined> {
    const s = this.load()
    if (!s) return undefined
    for (const r of rewards) {
      const arm = s.arms.find((a) => a.name === r.arm)
      if (!arm?.active) continue
      arm.posterior = updatePosterior(arm.posterior, Math.min(1, Math.max(0, r.reward)))
      s.sinceUpdate += 1
    }
    if (s.sinceUpdate >= s.updateEvery) rebalance(s)
    this.save(s)
    return view(s)
  }

  /** Takes an arm out (a guardrail stopped it): its traffic goes to the remaining arms at once. */
  async stopArm(name: string): Promise<BanditView | undefined> {
    const s = this.load()
    if (!s) return undefined
    const arm = s.arms.find((a) => a.name === name)
    if (arm?.active) {
      arm.active = false
      rebalance(s)
      this.save(s)
    }
    return view(s)
  }
}
