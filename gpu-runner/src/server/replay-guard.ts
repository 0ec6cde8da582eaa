/**
 * Refuses a signed request seen before (issue #16: a captured signed request was accepted again for its whole
 * 300 s window). Each request the gateway signs carries a fresh nonce (shared/src/signing.ts); the runner keeps
 * the nonces it has accepted for as long as their timestamps stay fresh, and refuses any nonce it holds.
 *
 * Memory is bounded: beyond `maxEntries` the oldest nonces are forgotten and every timestamp at or below theirs
 * is refused from then on (`floor`), so a forgotten nonce can never be replayed. The gateway signs each attempt
 * just before sending it, so real requests carry timestamps well above the floor.
 * @module
 */

export interface ReplayGuardOptions {
  /** Seconds a signed timestamp stays acceptable either side of now (the verifier's max skew). */
  windowS: number
  /** Nonces held at most (about 130 bytes each). */
  maxEntries?: number
}

export class ReplayGuard {
  /** nonce → its signed timestamp (unix s), in the order they were accepted. */
  private readonly seen = new Map<string, number>()
  /** Requests signed at or before this time are refused: some of their nonces may have been forgotten. */
  private floor = Number.NEGATIVE_INFINITY
  private readonly maxEntries: number

  constructor(private readonly opts: ReplayGuardOptions) {
    this.maxEntries = opts.maxEntries ?? 200_000
  }

  get size(): number {
    return this.seen.size
  }

  /**
   * Records `nonce` (signed at `timestamp`, unix s) as used.
   * @returns false when it was used before, or is too old for the guard to tell
   */
  admit(nonce: string, timestamp: number, nowS: number): boolean {
    this.expire(nowS)
    if (timestamp <= this.floor || this.seen.has(nonce)) return false
    this.seen.set(nonce, timestamp)
    for (const [oldest, ts] of this.seen) {
      if (this.seen.size <= this.maxEntries) break
      this.seen.delete(oldest)
      this.floor = Math.max(this.floor, ts)
    }
    return true
  }

  /** Nonces whose timestamps the signature check refuses anyway (expired) need not be held. */
  private expire(nowS: number): void {
    const cutoff = nowS - this.opts.windowS
    for (const [nonce, ts] of this.seen) {
      if (ts >= cutoff) break
      this.seen.delete(nonce)
    }
  }
}
