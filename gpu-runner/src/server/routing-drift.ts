/**
 * Routing drift (issue #19): how far the router's live distribution has moved from the one the builder measured on
 * the routing data (the manifest's `routingProfile`). Both sides are the mean applied weight per expert,
 * normalised to sum to 1, so the distance is the total variation between two distributions over the experts:
 * 0 when live traffic is routed like the routing data, 1 when no expert gets weight on both sides. Live rows are
 * a sliding window of the most recent routed rows, so an old traffic mix ages out instead of diluting a shift
 * forever. Abstained rows (all weights 0) carry no weight and are not counted.
 * @module
 */
import type { RoutingProfile } from '@twinserve/shared'

/** Default rows in the live window and the fewest before a drift value is reported. */
export const DRIFT_WINDOW_ROWS = 1000
export const DRIFT_MIN_ROWS = 100

/**
 * Total variation distance ½ Σ |p − q| between two non-negative vectors, each normalised to sum to 1.
 * @returns a value in [0, 1]; 1 when either vector is all zeros (nothing to compare)
 * @example totalVariation([1, 0], [0.5, 0.5]) // 0.5
 */
export function totalVariation(p: ArrayLike<number>, q: ArrayLike<number>): number {
  let sp = 0
  let sq = 0
  for (let i = 0; i < p.length; i++) sp += p[i] as number
  for (let i = 0; i < q.length; i++) sq += q[i] as number
  if (sp <= 0 || sq <= 0 || p.length !== q.length) return 1
  let d = 0
  for (let i = 0; i < p.length; i++) d += Math.abs((p[i] as number) / sp - (q[i] as number) / sq)
  return Math.min(1, d / 2)
}

/** The live window of one model version against its build-time profile. */
export class RoutingDrift {
  private readonly ring: Float32Array
  private readonly sum: Float64Array
  private next = 0
  private filled = 0
  private sinceResum = 0

  constructor(
    readonly profile: RoutingProfile,
    private readonly opts: { windowRows: number; minRows: number } = {
      windowRows: DRIFT_WINDOW_ROWS,
      minRows: DRIFT_MIN_ROWS,
    },
  ) {
    const T = profile.meanWeight.length
    this.ring = new Float32Array(opts.windowRows * T)
    this.sum = new Float64Array(T)
  }

  /** Routed rows in the window (abstentions excluded). */
  get rows(): number {
    return this.filled
  }

  /** Adds one request's applied weights ([rows, T] row-major, T = the profile's experts). */
  add(weights: Float32Array): void {
    const T = this.sum.length
    if (T === 0) return
    const W = this.opts.windowRows
    for (let r = 0; r + T <= weights.length; r += T) {
      let s = 0
      for (let j = 0; j < T; j++) s += weights[r + j] as number
      if (!(s > 0)) continue
      const at = this.next * T
      for (let j = 0; j < T; j++) {
        const w = weights[r + j] as number
        this.sum[j] = (this.sum[j] as number) + w - (this.ring[at + j] as number)
        this.ring[at + j] = w
      }
      this.next = (this.next + 1) % W
      if (this.filled < W) this.filled++
      // The running sums add and subtract float32 values; re-add the window now and then so rounding cannot pile up.
      if (++this.sinceResum >= 16 * W) this.resum()
    }
  }

  /** The distance from the build-time distribution; undefined until the window holds `minRows` rows. */
  value(): number | undefined {
    if (this.filled < Math.min(this.opts.minRows, this.opts.windowRows)) return undefined
    return totalVariation(this.sum, this.profile.meanWeight)
  }

  private resum(): void {
    const T = this.sum.length
    this.sum.fill(0)
    for (let i = 0; i < this.filled * T; i++)
      this.sum[i % T] = (this.sum[i % T] as number) + (this.ring[i] as number)
    this.sinceResum = 0
  }
}
