/**
 * A session in its own thread (issue #17) answers exactly what the same session answers on the event loop, leaves
 * the caller's feeds usable, takes shared-memory feeds (which onnxruntime itself refuses), reports onnxruntime's own
 * errors, keeps the feeds it is told to keep (no copy per run), and ends cleanly.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { GraphBuilder } from '../onnx/graph-builder.ts'
import { openSession, ort } from './ort-session.ts'
import { handOver, openThreadedSession, SessionThreadStopped } from './threaded-session.ts'

/** y = relu(x·(w + w0)) + b, and ids passed through (a float and an int64 input, two outputs). */
function graph(): Uint8Array {
  const g = new GraphBuilder('g')
    .input('x', 'float', ['n', 4])
    .input('w', 'float', [4, 3])
    .input('ids', 'int64', ['n'])
    .float('b', Float32Array.of(0.5, -0.5, 0.25), [3])
    .float(
      'w0',
      Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1)),
      [4, 3],
    )
  const r = g.node('Relu', [g.node('MatMul', ['x', g.node('Add', ['w', 'w0'])])])
  g.node('Add', [r, 'b'], { outputs: ['y'] })
  g.node('Identity', ['ids'], { outputs: ['ids_out'] })
  return g.output('y', 'float', ['n', 3]).output('ids_out', 'int64', ['n']).build()
}

const x = () =>
  new ort.Tensor(
    'float32',
    Float32Array.from({ length: 8 }, (_, i) => i - 3),
    [2, 4],
  )
const ids = () => new ort.Tensor('int64', BigInt64Array.of(7n, -2n), [2])
const w = (data: Float32Array<ArrayBufferLike> = new Float32Array(12).fill(0.1)) =>
  new ort.Tensor('float32', data as Float32Array, [4, 3])

/** Every thread of this process, by id, with its nice value (/proc/self/task/<tid>/stat, field 19). */
function threadNices(): Map<string, number> {
  const out = new Map<string, number>()
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      // Fields after the command name (which may hold spaces), from field 3 (state) on: nice is field 19.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.set(tid, Number(fields[19 - 3]))
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out
}

/** This thread's id: the test's event loop, whichever thread of the process it is. */
const ownThread = () => readlinkSync('/proc/thread-self').split('/').at(-1) ?? ''

/** Opens the graph with 3 intra-op threads and reports the nice of the threads that appeared, and of this one. */
async function niceOfNewThreads(lowerPriority?: number) {
  const before = threadNices()
  const opened = await openThreadedSession(graph(), {
    provider: 'cpu',
    threads: 3,
    ...(lowerPriority === undefined ? {} : { lowerPriority }),
  })
  const after = threadNices()
  // The run still answers, on the lowered threads.
  expect((await opened.session.run({ x: x(), w: w(), ids: ids() })).y?.dims).toEqual([2, 3])
  await opened.session.release()
  const added = [...after].filter(([tid]) => !before.has(tid)).map(([, nice]) => nice)
  const kept = [...before].filter(([tid]) => after.has(tid))
  return {
    priority: opened.priority,
    base: before.get(ownThread()) ?? Number.NaN,
    own: after.get(ownThread()),
    added,
    keptChanged: kept.filter(([tid, nice]) => after.get(tid) !== nice),
  }
}

describe.runIf(process.platform === 'linux')('ThreadedSession priority (#17, Linux)', () => {
  it('runs the session thread and its intra-op threads lowerPriority steps below the caller, which stays', async () => {
    const r = await niceOfNewThreads(7)
    expect(r.priority).toEqual({ lowered: Math.min(7, 19 - r.base) })
    expect(r.own).toBe(r.base)
    // The session's thread and onnxruntime's intra-op threads (3 asked: the thread itself runs one share).
    expect(r.added.length).toBeGreaterThanOrEqual(3)
    expect(r.added).toEqual(r.added.map(() => Math.min(19, r.base + 7)))
    // No thread that existed before the session (the event loop, libuv's pool, V8's helpers) changed.
    expect(r.keptChanged).toEqual([])
  })

  it('leaves them at the caller priority by default, and stops at nice 19 with a note', async () => {
    const plain = await niceOfNewThreads()
    expect(plain.priority).toEqual({ lowered: 0 })
    expect(plain.added.length).toBeGreaterThanOrEqual(3)
    expect(plain.added).toEqual(plain.added.map(() => plain.base))

    const capped = await niceOfNewThreads(19)
    expect(capped.priority.lowered).toBe(19 - capped.base)
    if (capped.base > 0) expect(capped.priority.note).toMatch(/19 is the end/)
    expect(capped.added).toEqual(capped.added.map(() => 19))
    expect(capped.own).toBe(capped.base)
  })
})

describe('ThreadedSession', () => {
  it('answers what the in-process session answers, and leaves the feeds usable', async () => {
    const model = graph()
    const inline = (await openSession(model, { provider: 'cpu' })).session
    const opened = await openThreadedSession(model, { provider: 'cpu' })
    const threaded = opened.session
    expect(opened.provider).toBe('cpu')
    expect([...threaded.inputNames]).toEqual([...inline.inputNames])
    expect([...threaded.outputNames]).toEqual([...inline.outputNames])
    expect(threaded.inputMetadata).toEqual(inline.inputMetadata)
    const feeds = { x: x(), w: w(), ids: ids() }
    const want = await inline.run(feeds)
    const got = await threaded.run(feeds)
    expect(got.y?.dims).toEqual([2, 3])
    expect(got.y?.data).toEqual(want.y?.data)
    expect(got.ids_out?.data).toEqual(BigInt64Array.of(7n, -2n))
    // The feeds were copied, not moved: they still hold their values.
    expect((feeds.x.data as Float32Array).length).toBe(8)
    expect(Array.from(feeds.x.data as Float32Array)).toEqual([-3, -2, -1, 0, 1, 2, 3, 4])
    // Only the fetched outputs come back.
    expect(Object.keys(await threaded.run(feeds, ['ids_out']))).toEqual(['ids_out'])
    await Promise.all([inline.release(), threaded.release()])
  })

  it('moves a handed-over feed to the thread instead of copying it, once', async () => {
    const model = graph()
    const inline = (await openSession(model, { provider: 'cpu' })).session
    const threaded = (await openThreadedSession(model, { provider: 'cpu' })).session
    const want = await inline.run({ x: x(), w: w(), ids: ids() })
    const given = x()
    handOver([given.data as Float32Array])
    const got = await threaded.run({ x: given, w: w(), ids: ids() })
    expect(got.y?.data).toEqual(want.y?.data)
    // Moved: the caller's array is detached, no copy was made.
    expect((given.data as Float32Array).length).toBe(0)
    // The hand-over is for one run: a later run of a fresh array copies it again.
    const kept = x()
    await threaded.run({ x: kept, w: w(), ids: ids() })
    expect((kept.data as Float32Array).length).toBe(8)
    await Promise.all([inline.release(), threaded.release()])
  })

  it('takes feeds in shared memory (onnxruntime itself refuses them)', async () => {
    const { session } = await openThreadedSession(graph(), { provider: 'cpu' })
    const shared = new Float32Array(new SharedArrayBuffer(12 * 4)).fill(0.1)
    const plain = new Float32Array(12).fill(0.1)
    const a = await session.run({ x: x(), w: w(shared), ids: ids() })
    const b = await session.run({ x: x(), w: w(plain), ids: ids() })
    expect(a.y?.data).toEqual(b.y?.data)
    await session.release()
  })

  it('keeps a kept feed in the thread: later runs reuse its copy until it is forgotten', async () => {
    const { session } = await openThreadedSession(graph(), { provider: 'cpu' })
    const plain = await session.run({ x: x(), w: w(), ids: ids() })
    const { w: kept } = session.keep({ w: w() })
    if (!kept) throw new Error('keep dropped the feed')
    expect((kept.data as Float32Array).buffer).toBeInstanceOf(SharedArrayBuffer)
    expect((await session.run({ x: x(), w: kept, ids: ids() })).y?.data).toEqual(plain.y?.data)
    // The thread runs on its own copy, made at the first run: writing the shared memory now changes nothing…
    ;(kept.data as Float32Array).fill(0.9)
    expect((await session.run({ x: x(), w: kept, ids: ids() })).y?.data).toEqual(plain.y?.data)
    // …until it is forgotten: the next run copies the data as it is then.
    session.forget({ w: kept })
    const after = await session.run({ x: x(), w: kept, ids: ids() })
    const fresh = await session.run({ x: x(), w: w(new Float32Array(12).fill(0.9)), ids: ids() })
    expect(after.y?.data).toEqual(fresh.y?.data)
    expect(after.y?.data).not.toEqual(plain.y?.data)
    await session.release()
  })

  it("rejects with onnxruntime's message for a bad input, and keeps serving", async () => {
    const { session } = await openThreadedSession(graph(), { provider: 'cpu' })
    const bad = new ort.Tensor('float32', new Float32Array(6), [2, 3])
    await expect(session.run({ x: bad, w: w(), ids: ids() })).rejects.toThrow(/dimension|shape/i)
    expect((await session.run({ x: x(), w: w(), ids: ids() })).y?.dims).toEqual([2, 3])
    await session.release()
  })

  it('runs posted together answer in order; after release, runs fail', async () => {
    const { session } = await openThreadedSession(graph(), { provider: 'cpu' })
    const outs = await Promise.all(
      [1n, 2n, 3n].map((k) =>
        session.run({ x: x(), w: w(), ids: new ort.Tensor('int64', BigInt64Array.of(k, 0n), [2]) }),
      ),
    )
    expect(outs.map((o) => o.ids_out?.data[0])).toEqual([1n, 2n, 3n])
    await session.release()
    await expect(session.run({ x: x(), w: w(), ids: ids() })).rejects.toThrow(SessionThreadStopped)
  })

  it("fails to open a graph onnxruntime cannot load, with onnxruntime's message", async () => {
    await expect(
      openThreadedSession(Uint8Array.of(1, 2, 3, 4), { provider: 'cpu' }),
    ).rejects.toThrow(/protobuf|parse|load/i)
  })
})
