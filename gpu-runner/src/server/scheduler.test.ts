import { AppError } from '@twinserve/shared'
import { describe, expect, it, vi } from 'vitest'
import { Scheduler } from './scheduler.ts'

interface Item {
  batchKey: string
  rows: number
  id: number
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Waits until the executor has started `n` batches. A fixed sleep instead races the scheduler on a loaded machine:
 * when the event loop runs late, the batch timer and the test's timer fire in the same turn, and requests the test
 * submits then still join the first batch (requests read in the same turn do).
 */
const startedBatches = (r: { batches: number[][] }, n: number) =>
  vi.waitFor(() => expect(r.batches).toHaveLength(n), { timeout: 10_000, interval: 1 })

/** An executor that records its batches and answers each item with its id (after `ms`). */
function recorder(ms = 0) {
  const batches: number[][] = []
  let release: (() => void) | undefined
  let gate: Promise<void> | undefined
  return {
    batches,
    /** Holds every run until `open()` is called. */
    hold() {
      gate = new Promise<void>((r) => {
        release = r
      })
    },
    open() {
      release?.()
      gate = undefined
    },
    execute: async (batch: Item[]) => {
      batches.push(batch.map((b) => b.id))
      if (gate) await gate
      if (ms) await sleep(ms)
      return batch.map((b) => b.id * 10)
    },
  }
}

const opts = { maxBatchSize: 8, maxBatchWaitMs: 5, maxQueue: 100, concurrency: 1 }

describe('Scheduler', () => {
  it('coalesces concurrent requests with the same key and returns each its own result', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, opts)
    const results = await Promise.all(
      [1, 2, 3].map((id) => s.submit({ batchKey: 'a', rows: 1, id }, { timeoutMs: 1000 })),
    )
    expect(results).toEqual([10, 20, 30])
    expect(r.batches).toEqual([[1, 2, 3]])
  })

  it('never mixes keys in a batch, and serves keys in order of their oldest request', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, opts)
    const items = [
      { batchKey: 'a', rows: 1, id: 1 },
      { batchKey: 'b', rows: 1, id: 2 },
      { batchKey: 'a', rows: 1, id: 3 },
    ]
    await Promise.all(items.map((i) => s.submit(i, { timeoutMs: 1000 })))
    expect(r.batches).toEqual([[1, 3], [2]])
  })

  it('caps a batch at maxBatchSize rows; a single larger request runs alone', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, { ...opts, maxBatchSize: 4 })
    r.hold()
    const first = s.submit({ batchKey: 'a', rows: 1, id: 0 }, { timeoutMs: 1000 })
    await startedBatches(r, 1) // id 0 is now running and held
    const rest = [
      { batchKey: 'a', rows: 3, id: 1 },
      { batchKey: 'a', rows: 2, id: 2 },
      { batchKey: 'a', rows: 9, id: 3 },
      { batchKey: 'a', rows: 1, id: 4 },
    ].map((i) => s.submit(i, { timeoutMs: 1000 }))
    r.open()
    await Promise.all([first, ...rest])
    // 3+2 > 4 rows, so 1 and 2 cannot share; 9 rows exceed the cap and run alone; 4 then runs alone.
    expect(r.batches).toEqual([[0], [1], [2], [3], [4]])
  })

  it('batches what piled up behind a running batch', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, { ...opts, maxBatchWaitMs: 0 })
    r.hold()
    const all = [s.submit({ batchKey: 'a', rows: 1, id: 0 }, { timeoutMs: 1000 })]
    await startedBatches(r, 1)
    for (let id = 1; id <= 5; id++)
      all.push(s.submit({ batchKey: 'a', rows: 1, id }, { timeoutMs: 1000 }))
    expect(s.queueDepth).toBe(5)
    expect(s.inFlight).toBe(1)
    r.open()
    await Promise.all(all)
    expect(r.batches).toEqual([[0], [1, 2, 3, 4, 5]])
  })

  it('starts a batch that is not full at the end of the event-loop turn: requests read in the same turn join it', async () => {
    // onnxruntime runs synchronously on the event loop, so the requests that arrived during a run are all read in
    // one I/O phase after it; with maxBatchWaitMs 0 the first of them must not start a run alone.
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, { ...opts, maxBatchWaitMs: 0 })
    const all = [1, 2, 3].map((id) => s.submit({ batchKey: 'a', rows: 1, id }, { timeoutMs: 1000 }))
    expect(s.inFlight).toBe(0)
    expect(s.queueDepth).toBe(3)
    await Promise.all(all)
    expect(r.batches).toEqual([[1, 2, 3]])
  })

  it('refuses with 503 + Retry-After when the queue is full', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, { ...opts, maxQueue: 2, maxBatchWaitMs: 1000 })
    const a = s.submit({ batchKey: 'a', rows: 1, id: 1 }, { timeoutMs: 5000 })
    const b = s.submit({ batchKey: 'a', rows: 1, id: 2 }, { timeoutMs: 5000 })
    const err = await s
      .submit({ batchKey: 'a', rows: 1, id: 3 }, { timeoutMs: 5000 })
      .catch((e) => e)
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).code).toBe('RUNNER_OVERLOADED')
    expect((err as AppError).status).toBe(503)
    expect((err as AppError).retryAfter).toBeGreaterThan(0)
    await s.drain(5000) // draining dispatches without waiting for the batch to fill
    expect(await Promise.all([a, b])).toEqual([10, 20])
  })

  it('times out a request at its deadline, queued or running, and keeps serving others', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, opts)
    r.hold()
    // Deadlines well above a loaded machine's event-loop lag: the running one must start before its deadline.
    const running = s.submit({ batchKey: 'a', rows: 1, id: 1 }, { timeoutMs: 300 })
    await startedBatches(r, 1)
    const queued = s.submit({ batchKey: 'b', rows: 1, id: 2 }, { timeoutMs: 150 })
    const later = s.submit({ batchKey: 'c', rows: 1, id: 3 }, { timeoutMs: 5000 })
    // Both handled at once: the queued one's deadline passes first, while the running one is still awaited.
    const errors = await Promise.all([running, queued].map((p) => p.catch((e: unknown) => e)))
    for (const err of errors) expect((err as AppError).code).toBe('RUNNER_TIMEOUT')
    expect(s.queueDepth).toBe(1)
    r.open()
    expect(await later).toBe(30)
    expect(r.batches).toEqual([[1], [3]])
  })

  it('drops a queued request whose client went away', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, opts)
    r.hold()
    const running = s.submit({ batchKey: 'a', rows: 1, id: 1 }, { timeoutMs: 1000 })
    await startedBatches(r, 1)
    const ac = new AbortController()
    const gone = s.submit({ batchKey: 'a', rows: 1, id: 2 }, { timeoutMs: 1000, signal: ac.signal })
    ac.abort()
    await expect(gone).rejects.toThrow(/closed the request/)
    r.open()
    await running
    expect(r.batches).toEqual([[1]])
  })

  it('fails every request of a batch whose run fails, then goes on', async () => {
    let calls = 0
    const s = new Scheduler<Item, number>(async (batch) => {
      calls++
      if (calls === 1) throw new AppError('MERGE_FAILED', 'boom')
      return batch.map((b) => b.id)
    }, opts)
    const failed = await Promise.allSettled([
      s.submit({ batchKey: 'a', rows: 1, id: 1 }, { timeoutMs: 1000 }),
      s.submit({ batchKey: 'a', rows: 1, id: 2 }, { timeoutMs: 1000 }),
    ])
    expect(failed.map((f) => f.status)).toEqual(['rejected', 'rejected'])
    expect(await s.submit({ batchKey: 'a', rows: 1, id: 3 }, { timeoutMs: 1000 })).toBe(3)
  })

  it('fails only the requests the executor answers with an Error', async () => {
    const s = new Scheduler<Item, number>(
      async (batch) =>
        batch.map((b) => (b.id === 2 ? new AppError('INVALID_REQUEST', 'bad row') : b.id)),
      { ...opts, maxBatchWaitMs: 20 },
    )
    const settled = await Promise.allSettled(
      [1, 2, 3].map((id) => s.submit({ batchKey: 'a', rows: 1, id }, { timeoutMs: 1000 })),
    )
    expect(
      settled.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as AppError).code)),
    ).toEqual([1, 'INVALID_REQUEST', 3])
  })

  it('drain finishes everything accepted and refuses new work', async () => {
    const r = recorder(20)
    const s = new Scheduler<Item, number>(r.execute, { ...opts, maxBatchSize: 2 })
    const accepted = [1, 2, 3, 4, 5].map((id) =>
      s.submit({ batchKey: 'a', rows: 1, id }, { timeoutMs: 5000 }),
    )
    const drained = s.drain(5000)
    const refused = await s
      .submit({ batchKey: 'a', rows: 1, id: 6 }, { timeoutMs: 5000 })
      .catch((e) => e)
    expect((refused as AppError).code).toBe('RUNNER_OVERLOADED')
    expect((refused as AppError).message).toMatch(/draining/)
    expect(await drained).toBe(true)
    expect(await Promise.all(accepted)).toEqual([10, 20, 30, 40, 50])
    expect(s.queueDepth + s.inFlight).toBe(0)
  })

  it('drain reports false when work outlives its timeout', async () => {
    const r = recorder()
    const s = new Scheduler<Item, number>(r.execute, opts)
    r.hold()
    const p = s.submit({ batchKey: 'a', rows: 1, id: 1 }, { timeoutMs: 5000 })
    expect(await s.drain(20)).toBe(false)
    r.open()
    expect(await p).toBe(10)
  })
})
