/**
 * A per-runner circuit breaker: after `threshold` consecutive failures the runner gets no traffic for
 * `cooldownMs`; then one trial request decides between closing it again and another cooldown.
 * @module
 */
import type { BreakerState } from '@twinserve/shared'

export interface BreakerOptions {
  threshold: number
  cooldownMs: number
}

export class CircuitBreaker {
  private failures = 0
  private openedAtMs = 0
  private opened = false
  /** When the half-open trial was handed out; a trial whose report never comes is retried after a cooldown. */
  private trialAtMs: number | undefined

  constructor(private readonly options: BreakerOptions) {}

  state(nowMs: number): BreakerState {
    if (!this.opened) return 'closed'
    return nowMs - this.openedAtMs >= this.options.cooldownMs ? 'half_open' : 'open'
  }

  get consecutiveFailures(): number {
    return this.failures
  }

  /** Whether a new request may go to this runner now. */
  allows(nowMs: number): boolean {
    const s = this.state(nowMs)
    if (s === 'closed') return true
    if (s === 'open') return false
    return this.trialAtMs === undefined || nowMs - this.trialAtMs >= this.options.cooldownMs
  }

  /** Call when a request is sent; in half-open state it takes the single trial slot. */
  onDispatch(nowMs: number): void {
    if (this.state(nowMs) === 'half_open') this.trialAtMs = nowMs
  }

  onSuccess(): void {
    this.failures = 0
    this.opened = false
    this.trialAtMs = undefined
  }

  onFailure(nowMs: number): void {
    this.failures += 1
    const trialFailed = this.opened && this.trialAtMs !== undefined
    if (trialFailed || this.failures >= this.options.threshold) {
      this.opened = true
      this.openedAtMs = nowMs
    }
    this.trialAtMs = undefined
  }
}
