/**
 * Which arm owns each of the EXPERIMENT_BUCKETS buckets units hash into. Weights are percentages of all units;
 * buckets no arm owns are not enrolled (their units see the model's default behaviour).
 *
 * Re-allocation moves as few units as possible: an arm whose share does not shrink keeps every bucket it had,
 * so a unit changes arm only when its arm gave up traffic. Growing arms take unowned buckets (never-allocated
 * ones and those shrinking arms just released), lowest first. That is what keeps assignment sticky while
 * weights change (GrowthBook's weight changes re-bucket users; this never does for arms that keep or gain).
 * @module
 */
import { type BucketRange, EXPERIMENT_BUCKETS } from '@twinserve/shared'
import { murmur3 } from './murmur3.ts'

/** Sorted, non-overlapping [start, end, arm] ranges; arm is an index into the experiment's arms. */
export type Allocation = BucketRange[]

/**
 * Buckets per arm for weights in percent: floors, then the leftover of the rounded total handed out by largest
 * remainder, so the counts add up to round(total × 100) and never exceed EXPERIMENT_BUCKETS.
 */
export function bucketCounts(weights: readonly number[]): number[] {
  const exact = weights.map((w) => (w * EXPERIMENT_BUCKETS) / 100)
  const counts = exact.map((e) => Math.floor(e + 1e-9))
  const total = Math.min(EXPERIMENT_BUCKETS, Math.round(exact.reduce((s, e) => s + e, 0) + 1e-9))
  let left = total - counts.reduce((s, c) => s + c, 0)
  const byRemainder = exact
    .map((e, i) => ({ i, r: e - (counts[i] ?? 0) }))
    .sort((a, b) => b.r - a.r || a.i - b.i)
  for (const { i } of byRemainder) {
    if (left <= 0) break
    counts[i] = (counts[i] ?? 0) + 1
    left--
  }
  return counts
}

/** Each arm's buckets, contiguous, in arm order from bucket 0. */
export function initialAllocation(counts: readonly number[]): Allocation {
  const out: Allocation = []
  let at = 0
  counts.forEach((c, arm) => {
    if (c > 0) out.push([at, at + c, arm])
    at += c
  })
  return out
}

/** Owner of every bucket (-1: none), expanded. */
function owners(allocation: Allocation): Int16Array {
  const own = new Int16Array(EXPERIMENT_BUCKETS).fill(-1)
  for (const [start, end, arm] of allocation) own.fill(arm, start, end)
  return own
}

function compact(own: Int16Array): Allocation {
  const out: Allocation = []
  let start = 0
  for (let b = 1; b <= own.length; b++)
    if (b === own.length || own[b] !== own[start]) {
      const arm = own[start] as number
      if (arm >= 0) out.push([start, b, arm])
      start = b
    }
  return out
}

/** Buckets each arm holds (arms up to `armCount`). */
export function allocationCounts(allocation: Allocation, armCount: number): number[] {
  const counts = new Array<number>(armCount).fill(0)
  for (const [start, end, arm] of allocation) counts[arm] = (counts[arm] ?? 0) + end - start
  return counts
}

/**
 * Moves buckets so arm i holds `target[i]`, changing owners only where an arm shrinks: it releases its
 * highest buckets; arms that grow take the lowest unowned ones. Arms beyond the allocation's (appended arms)
 * start with none.
 */
export function reallocate(allocation: Allocation, target: readonly number[]): Allocation {
  const need = target.reduce((s, c) => s + c, 0)
  if (need > EXPERIMENT_BUCKETS)
    throw new RangeError(`allocation of ${need} buckets exceeds ${EXPERIMENT_BUCKETS}`)
  const own = owners(allocation)
  const held = allocationCounts(allocation, Math.max(target.length, maxArm(allocation) + 1))
  // Shrink first, so released buckets are available to growing arms.
  held.forEach((have, arm) => {
    let release = have - (target[arm] ?? 0)
    for (let b = EXPERIMENT_BUCKETS - 1; b >= 0 && release > 0; b--)
      if (own[b] === arm) {
        own[b] = -1
        release--
      }
  })
  let cursor = 0
  target.forEach((want, arm) => {
    let grow = want - (held[arm] ?? 0)
    while (grow > 0 && cursor < EXPERIMENT_BUCKETS) {
      if (own[cursor] === -1) {
        own[cursor] = arm
        grow--
      }
      cursor++
    }
  })
  return compact(own)
}

function maxArm(allocation: Allocation): number {
  return allocation.reduce((m, [, , arm]) => Math.max(m, arm), -1)
}

/** The arm owning `bucket`, or undefined when no arm does. */
export function armAt(allocation: Allocation, bucket: number): number | undefined {
  let lo = 0
  let hi = allocation.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const r = allocation[mid] as BucketRange
    if (bucket < r[0]) hi = mid - 1
    else if (bucket >= r[1]) lo = mid + 1
    else return r[2]
  }
  return undefined
}

/** A unit's bucket in an experiment: stable for the same (salt, unit) on every isolate and release. */
export function unitBucket(salt: string, unitId: string): number {
  return murmur3(`${salt}:${unitId}`) % EXPERIMENT_BUCKETS
}
