/**
 * One deferred write-behind flush per isolate at a time (exposures, rollout outcomes): records buffered while a
 * flush is scheduled ride along with it, so D1 sees one batch per interval instead of one write per request.
 * @module
 */
import { errorFields, log } from './log.ts'

export class DeferredFlush {
  private scheduled: Promise<void> | undefined

  /** @param failure the warning logged when a flush fails (the records it held are dropped). */
  constructor(private readonly failure: string) {}

  /**
   * Runs `flush` after `delayMs` unless one is already scheduled.
   * @returns the promise to hand to waitUntil, or undefined when an earlier flush will take the new records
   */
  schedule(delayMs: number, flush: () => Promise<void>): Promise<void> | undefined {
    if (this.scheduled) return undefined
    this.scheduled = new Promise<void>((resolve) => setTimeout(resolve, delayMs))
      .then(() => {
        this.scheduled = undefined
        return flush()
      })
      .catch((err: unknown) => {
        this.scheduled = undefined
        log('warn', this.failure, errorFields(err))
      })
    return this.scheduled
  }
}
