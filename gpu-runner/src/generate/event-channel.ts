/**
 * A one-consumer queue the engine pushes a sequence's events into and a request handler reads with
 * `for await`. Leaving the loop early (break, a thrown error, a closed client) calls `onReturn`, which is how a
 * consumer that stops listening cancels its sequence.
 * @module
 */

export class EventChannel<T> implements AsyncIterable<T> {
  private readonly queue: T[] = []
  private waiter: ((r: IteratorResult<T>) => void) | undefined
  private closed = false

  constructor(private readonly onReturn: () => void) {}

  push(value: T): void {
    if (this.closed) return
    const w = this.waiter
    if (w) {
      this.waiter = undefined
      w({ value, done: false })
    } else this.queue.push(value)
  }

  /** No more events; a waiting reader gets the end once the queue is read. */
  close(): void {
    this.closed = true
    if (this.queue.length === 0 && this.waiter) {
      const w = this.waiter
      this.waiter = undefined
      w({ value: undefined, done: true })
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const value = this.queue.shift()
        if (value !== undefined) return Promise.resolve({ value, done: false })
        if (this.closed) return Promise.resolve({ value: undefined, done: true })
        return new Promise((resolve) => {
          this.waiter = resolve
        })
      },
      return: () => {
        this.closed = true
        this.queue.length = 0
        this.onReturn()
        return Promise.resolve({ value: undefined, done: true })
      },
    }
  }
}
