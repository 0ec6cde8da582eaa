/**
 * How many hedged attempts an isolate may send: `percent` of its requests, with a small burst. When every runner
 * is slow (overload), most requests would pass their hedge delay; hedging them all would double the load on a
 * fleet that is already behind. The budget keeps hedges to the tail they are meant for (Dean and Barroso, "The
 * Tail at Scale": hedge after the p95–p99, a few percent extra load).
 * @module
 */

const BURST = 10

export class HedgeBudget {
  private tokens = BURST

  constructor(private readonly percent: number) {}

  /** Every request earns `percent`/100 of a hedge. */
  earn(): void {
    this.tokens = Math.min(BURST, this.tokens + this.percent / 100)
  }

  /** Hedges left now (a route trace shows it). */
  get available(): number {
    return this.tokens
  }

  /** Spends one hedge if there is one. */
  take(): boolean {
    if (this.percent === 0 || this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
