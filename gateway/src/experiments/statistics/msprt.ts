/**
 * The mixture sequential probability ratio test (mSPRT) for the difference of two means, and the always-valid
 * p-value and confidence sequence it gives. Its guarantee: whenever you look (after every observation, daily,
 * or at a moment picked because the result looked good), P(p ≤ α at any time | no difference) ≤ α. A
 * fixed-sample test read repeatedly does not have it (its false positives grow with every look).
 *
 * The estimate Δ̂ = mean(treatment) − mean(control) is treated as N(θ, V) with V = σ²(1/n_t + 1/n_c); mixing the
 * likelihood ratio of θ against 0 over θ ~ N(0, τ²) gives, in closed form,
 *
 *   Λ = sqrt(V / (V + τ²)) · exp(Δ̂² τ² / (2 V (V + τ²)))
 *
 * (with n_t = n_c = n and V = 2σ²/n this is Johari et al.'s eq. for paired observations). The always-valid
 * p-value is p_n = min(1, min over k ≤ n of 1/Λ_k). σ² is estimated by the pooled sample variance (plug-in, as
 * the paper does for large samples) once each side has `burnIn` observations.
 * @see https://arxiv.org/abs/1512.04922 (Johari, Pekelis, Walsh: Always valid inference, Operations Research 2022)
 * @see https://doi.org/10.1145/3097983.3097992 (Johari, Koomen, Pekelis, Walsh: Peeking at A/B tests, KDD 2017)
 * @module
 */

/** log Λ for an estimate `diff` with variance `variance` under a N(0, tau2) mixture. */
export function logMixtureLikelihoodRatio(diff: number, variance: number, tau2: number): number {
  if (!(variance > 0)) return diff === 0 ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY
  const sum = variance + tau2
  return 0.5 * Math.log(variance / sum) + (diff * diff * tau2) / (2 * variance * sum)
}

/**
 * Half-width of the (1 − α) confidence interval at one time: the θ0 not rejected by the mSPRT centred at θ0.
 * Their intersection over time is the confidence sequence.
 */
export function confidenceHalfWidth(variance: number, tau2: number, alpha: number): number {
  const sum = variance + tau2
  return Math.sqrt(((variance * sum) / tau2) * (2 * Math.log(1 / alpha) + Math.log(sum / variance)))
}

/** Running mean and sum of squared deviations (Welford): one pass, numerically stable. */
class Moments {
  n = 0
  mean = 0
  ss = 0
  add(x: number): void {
    this.n += 1
    const d = x - this.mean
    this.mean += d / this.n
    this.ss += d * (x - this.mean)
  }
}

export interface SequentialOptions {
  /** Variance τ² of the normal mixture over the difference (τ ≈ the effect size you expect). */
  tau2: number
  /** Observations each side needs before the test runs. */
  burnIn: number
  /** Known per-observation variance σ² (both sides); estimated from the data (pooled) when absent. */
  knownVariance?: number
  /** Level of the confidence sequence. */
  alpha: number
}

export type Side = 'control' | 'treatment'

/**
 * Streams observations of both sides in arrival order and keeps the always-valid p-value and confidence
 * sequence current after each one.
 */
export class SequentialComparison {
  private readonly sides = { control: new Moments(), treatment: new Moments() }
  /** min over the looks so far of 1/Λ, capped at 1. */
  pValue = 1
  /** Running intersection of the per-look intervals; undefined until the test starts. */
  interval: [number, number] | undefined
  /** Observations seen (both sides). */
  seen = 0

  constructor(private readonly opts: SequentialOptions) {}

  get difference(): number {
    return this.sides.treatment.mean - this.sides.control.mean
  }

  count(side: Side): number {
    return this.sides[side].n
  }

  /** The variance of the difference estimate now, or undefined during burn-in. */
  variance(): number | undefined {
    const { control: c, treatment: t } = this.sides
    if (c.n < this.opts.burnIn || t.n < this.opts.burnIn || c.n === 0 || t.n === 0) return undefined
    const known = this.opts.knownVariance
    if (known === undefined && c.n + t.n < 3) return undefined
    const sigma2 = known ?? (c.ss + t.ss) / (c.n + t.n - 2)
    return sigma2 * (1 / c.n + 1 / t.n)
  }

  /** log Λ at the last look (undefined before the first). */
  logLambda: number | undefined

  /**
   * Adds one observation and, unless `look` is false (the caller adds a batch and looks at its end), updates
   * the p-value and confidence sequence.
   */
  add(side: Side, x: number, look = true): void {
    this.sides[side].add(x)
    this.seen += 1
    if (!look) return
    const v = this.variance()
    if (v === undefined) return
    const logLambda = logMixtureLikelihoodRatio(this.difference, v, this.opts.tau2)
    this.logLambda = logLambda
    this.pValue = Math.min(this.pValue, Math.min(1, Math.exp(-logLambda)))
    if (v > 0) {
      const half = confidenceHalfWidth(v, this.opts.tau2, this.opts.alpha)
      const lo = this.difference - half
      const hi = this.difference + half
      const prev = this.interval
      // Intersect with what earlier looks allowed; should the two ever be disjoint (a rare event of
      // probability < α), keep the latest interval rather than report an empty one.
      this.interval =
        prev && Math.max(prev[0], lo) <= Math.min(prev[1], hi)
          ? [Math.max(prev[0], lo), Math.min(prev[1], hi)]
          : [lo, hi]
    }
  }
}
