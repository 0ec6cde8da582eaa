/**
 * Thompson sampling over arms with rewards in [0, 1]: each arm's mean reward has a Beta posterior (Beta(1, 1)
 * prior; a reward r adds r to α and 1 − r to β, the usual extension from 0/1 to fractional rewards), and traffic
 * follows each arm's posterior probability of being the best, with a floor so that no arm stops being explored.
 * @see https://doi.org/10.2307/2332286 (Thompson 1933)
 * @see https://arxiv.org/abs/1707.02038 (Russo et al.: A tutorial on Thompson sampling)
 * @module
 */
import { type Rng, sampleBeta } from './random.ts'

export interface BetaPosterior {
  alpha: number
  beta: number
}

export const PRIOR: BetaPosterior = { alpha: 1, beta: 1 }

export function updatePosterior(p: BetaPosterior, reward: number): BetaPosterior {
  return { alpha: p.alpha + reward, beta: p.beta + (1 - reward) }
}

/** P(arm i has the highest mean) by Monte Carlo over `draws` joint posterior samples. */
export function probabilityBest(
  posteriors: readonly BetaPosterior[],
  rng: Rng,
  draws = 4000,
): number[] {
  const wins = new Array<number>(posteriors.length).fill(0)
  if (posteriors.length === 0) return wins
  for (let d = 0; d < draws; d++) {
    let best = 0
    let bestValue = Number.NEGATIVE_INFINITY
    posteriors.forEach((p, i) => {
      const v = sampleBeta(p.alpha, p.beta, rng)
      if (v > bestValue) {
        bestValue = v
        best = i
      }
    })
    wins[best] = (wins[best] ?? 0) + 1
  }
  return wins.map((w) => w / draws)
}

/**
 * Shares (summing to 1) from P(best) with every arm at least `floor` (a fraction; k·floor ≤ 1):
 * floor + (1 − k·floor)·P(best).
 */
export function sharesWithFloor(pBest: readonly number[], floor: number): number[] {
  const k = pBest.length
  if (k === 0) return []
  const f = Math.min(floor, 1 / k)
  return pBest.map((p) => f + (1 - k * f) * p)
}
