/**
 * Dynamic batching with backpressure. Requests wait in one bounded FIFO queue; requests with the same batch key
 * (model, execution path, variant or recipe, non-batch input shapes) are coalesced into one run of up to
 * `maxBatchSize` rows, each row keeping its own controls. A batch goes when it is full or its oldest request has
 * waited `maxBatchWaitMs`, and only while fewer than `concurrency` runs are executing, so under load requests pile
 * up behind the running batch and the next batch is naturally larger.
 *
 * A batch that is not full never starts in the middle of an event-loop turn: it waits for the turn's end (one
 * setImmediate). With sessions on the event loop (`--session-threads off`) onnxruntime-node runs a session
 * synchronously on this thread, so every request that arrived during a run is read in the single I/O phase after
 * it; starting a batch at the first of them (with maxBatchWaitMs 0) would run it nearly alone and leave the rest
 * for the next run. What that bought (rows per run and req/s at 32 clients on the BERT-base-sized model) is in
 * bench/RESULTS.md, "Serving performance", Findings: "Dynamic batching and the event loop". With sessions in
 * their own threads (the default since issue #17) requests are read while the run executes and are already
 * queued when it ends, and the wait costs one turn.
 *
 * A full queue answers RUNNER_OVERLOADED (503 + Retry-After) at once instead of queueing without bound; every
 * request has a deadline (RUNNER_TIMEOUT, 504) whether it is still queued or already running; `drain()` stops
 * accepting and resolves once everything accepted has finished.
 * @module
 */
import { AppError } from '@twinserve/shared'

export interface Batchable {
  batchKey: string
  rows: number
}

export interface SchedulerOptions {
  maxBatchSize: number
  maxBatchWaitMs: number
  maxQueue: number
  concurrency: number
  /** Seconds suggested in Retry-After when the queue is full or the runner drains. */
  retryAfterS?: number
  /** Called for each batch started (metrics). */
  onBatch?: (info: { key: string; requests: number; rows: number }) => void
}

export interface SubmitOptions {
  /** Milliseconds from now until the request's deadline. */
  timeoutMs: number
  /** The client went away: drop the request if it is still queued. */
  signal?: AbortSignal
}

interface Job<T, R> {
  item: T
  enqueuedAt: number
  settled: boolean
  resolve: (r: R) => void
  reject: (e: unknown) => void
  timer?: ReturnType<typeof setTimeout>
  onAbort?: () => void
  signal?: AbortSignal
}

export class Scheduler<T extends Batchable, R> {
  private queue: Job<T, R>[] = []
  private running = 0
  private runningJobs = 0
  private closed = false
  private wake?: { at: number; timer: ReturnType<typeof setTimeout> }
  /** A pump is scheduled for the end of this event-loop turn. */
  private turnPending = false
  /** The pump running now is the one at the end of a turn: a batch that is not full may start. */
  private turnEnded = false
  private idleWaiters: (() => void)[] = []

  /**
   * @param execute runs one batch; returns one entry per request, in order: its result, or an Error that fails
   * only that request (a run that throws fails the whole batch)
   */
  constructor(
    private readonly execute: (batch: T[]) => Promise<(R | Error)[]>,
    private readonly opts: SchedulerOptions,
  ) {}

  /** Requests waiting to run. */
  get queueDepth(): number {
    return this.queue.length
  }

  /** Requests inside batches that are executing. */
  get inFlight(): number {
    return this.runningJobs
  }

  get capacity(): number {
    return this.opts.maxQueue
  }

  get draining(): boolean {
    return this.closed
  }

  /**
   * Queues one request; resolves with its result.
   * @throws AppError RUNNER_OVERLOADED when the queue is full or the scheduler drains, RUNNER_TIMEOUT at the
   * deadline
   */
  submit(item: T, opts: SubmitOptions): Promise<R> {
    const retryAfter = this.opts.retryAfterS ?? 1
    if (this.closed)
      return Promise.reject(
        new AppError('RUNNER_OVERLOADED', 'the runner is draining and takes no new requests', {
          retryAfter,
        }),
      )
    if (this.queue.length >= this.opts.maxQueue)
      return Promise.reject(
        new AppError(
          'RUNNER_OVERLOADED',
          `the runner's queue is full (${this.opts.maxQueue} waiting); retry shortly or elsewhere`,
          { retryAfter },
        ),
      )
    if (opts.signal?.aborted)
      return Promise.reject(new AppError('INVALID_REQUEST', 'the client closed the request'))
    return new Promise<R>((resolve, reject) => {
      const job: Job<T, R> = { item, enqueuedAt: Date.now(), settled: false, resolve, reject }
      job.timer = setTimeout(() => {
        this.dequeue(job)
        this.settle(job, (j) =>
          j.reject(
            new AppError(
              'RUNNER_TIMEOUT',
              `the request's deadline (${opts.timeoutMs} ms) passed before it was served`,
            ),
          ),
        )
      }, opts.timeoutMs)
      if (opts.signal) {
        job.signal = opts.signal
        job.onAbort = () => {
          if (this.dequeue(job))
            this.settle(job, (j) =>
              j.reject(new AppError('INVALID_REQUEST', 'the client closed the request')),
            )
        }
        opts.signal.addEventListener('abort', job.onAbort, { once: true })
      }
      this.queue.push(job)
      this.pump()
    })
  }

  /**
   * Stops accepting requests and waits until every accepted one has finished (or `timeoutMs` passed).
   * @returns true when everything finished in time
   */
  async drain(timeoutMs: number): Promise<boolean> {
    this.closed = true
    // Batches waiting to fill go now: nothing more will join them.
    this.pump()
    if (this.idle()) return true
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs)
      this.idleWaiters.push(() => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.running === 0
  }

  private dequeue(job: Job<T, R>): boolean {
    const i = this.queue.indexOf(job)
    if (i < 0) return false
    this.queue.splice(i, 1)
    this.checkIdle()
    return true
  }

  private settle(job: Job<T, R>, f: (j: Job<T, R>) => void): void {
    if (job.settled) return
    job.settled = true
    if (job.timer) clearTimeout(job.timer)
    if (job.signal && job.onAbort) job.signal.removeEventListener('abort', job.onAbort)
    f(job)
  }

  private checkIdle(): void {
    if (!this.idle()) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const w of waiters) w()
  }

  /** Starts every batch that is ready, and sets a timer for the next one that will be. */
  private pump(): void {
    const now = Date.now()
    let nextReady = Number.POSITIVE_INFINITY
    while (this.running < this.opts.concurrency && this.queue.length > 0) {
      // Keys in order of their oldest waiting request (Map keeps first-insertion order).
      const groups = new Map<string, Job<T, R>[]>()
      for (const job of this.queue) {
        const g = groups.get(job.item.batchKey)
        if (g) g.push(job)
        else groups.set(job.item.batchKey, [job])
      }
      let started = false
      for (const jobs of groups.values()) {
        const batch: Job<T, R>[] = []
        let rows = 0
        for (const j of jobs) {
          // The first request always goes, even when it alone exceeds maxBatchSize (it then runs alone).
          if (batch.length > 0 && rows + j.item.rows > this.opts.maxBatchSize) break
          batch.push(j)
          rows += j.item.rows
        }
        const full = rows >= this.opts.maxBatchSize || batch.length < jobs.length
        const readyAt = (batch[0]?.enqueuedAt ?? now) + this.opts.maxBatchWaitMs
        // A draining runner does not wait for batches to fill: nothing more will join them.
        if (full || readyAt <= now || this.closed) {
          if (!full && !this.closed && !this.turnEnded) {
            this.pumpAtTurnEnd()
            break
          }
          this.start(batch, rows)
          started = true
          break
        }
        nextReady = Math.min(nextReady, readyAt)
      }
      if (!started) break
    }
    if (this.queue.length > 0 && Number.isFinite(nextReady)) this.wakeAt(nextReady)
  }

  /** Requests read in this turn's I/O phase join the batch; it starts once the phase is over. */
  private pumpAtTurnEnd(): void {
    if (this.turnPending) return
    this.turnPending = true
    setImmediate(() => {
      this.turnPending = false
      this.turnEnded = true
      try {
        this.pump()
      } finally {
        this.turnEnded = false
      }
    })
  }

  private wakeAt(at: number): void {
    if (this.wake && this.wake.at <= at) return
    if (this.wake) clearTimeout(this.wake.timer)
    const timer = setTimeout(
      () => {
        this.wake = undefined
        this.pump()
      },
      Math.max(0, at - Date.now()),
    )
    this.wake = { at, timer }
  }

  private start(batch: Job<T, R>[], rows: number): void {
    for (const j of batch) this.queue.splice(this.queue.indexOf(j), 1)
    this.running++
    this.runningJobs += batch.length
    const key = batch[0]?.item.batchKey ?? ''
    this.opts.onBatch?.({ key, requests: batch.length, rows })
    const finish = () => {
      this.running--
      this.runningJobs -= batch.length
      this.pump()
      this.checkIdle()
    }
    let run: Promise<(R | Error)[]>
    try {
      run = this.execute(batch.map((j) => j.item))
    } catch (err) {
      run = Promise.reject(err)
    }
    run.then(
      (results) => {
        batch.forEach((job, i) => {
          const r = results[i]
          this.settle(job, (j) => {
            if (r === undefined)
              j.reject(new AppError('INTERNAL', 'the batch returned fewer results than requests'))
            else if (r instanceof Error) j.reject(r)
            else j.resolve(r)
          })
        })
        finish()
      },
      (err: unknown) => {
        for (const job of batch) this.settle(job, (j) => j.reject(err))
        finish()
      },
    )
  }
}
