/**
 * Admission for generation: at most `maxSequences` sequences at once, and their KV caches within `maxBytes`.
 * A sequence reserves its whole cache (prompt + max_tokens positions) when it is admitted, so a running sequence
 * never runs out mid-generation (vLLM preempts instead; we refuse up front, which is simpler and never drops
 * work already streaming). Full → RUNNER_OVERLOADED, 503 with Retry-After.
 * @module
 */
import { AppError } from '@twinserve/shared'

export interface KvBudgetOptions {
  maxSequences: number
  maxBytes: number
}

export class KvBudget {
  private sequences = 0
  private bytes = 0

  constructor(readonly options: KvBudgetOptions) {}

  get activeSequences(): number {
    return this.sequences
  }

  get reservedBytes(): number {
    return this.bytes
  }

  /**
   * @throws AppError INVALID_REQUEST when one sequence alone needs more than the whole budget (waiting cannot help)
   * @throws AppError RUNNER_OVERLOADED when the budget is in use by others
   */
  reserve(bytes: number): void {
    const { maxSequences, maxBytes } = this.options
    if (bytes > maxBytes)
      throw new AppError(
        'INVALID_REQUEST',
        `this request needs ${bytes} bytes of KV cache, more than the runner's whole budget of ${maxBytes}; ask for fewer tokens`,
      )
    if (this.sequences >= maxSequences)
      throw new AppError(
        'RUNNER_OVERLOADED',
        `generation is at its limit of ${maxSequences} concurrent sequences; retry shortly`,
        { retryAfter: 1 },
      )
    if (this.bytes + bytes > maxBytes)
      throw new AppError(
        'RUNNER_OVERLOADED',
        `the KV cache budget is full (${this.bytes} of ${maxBytes} bytes reserved; this request needs ${bytes}); retry shortly`,
        { retryAfter: 1 },
      )
    this.sequences++
    this.bytes += bytes
  }

  release(bytes: number): void {
    this.sequences--
    this.bytes -= bytes
  }
}
