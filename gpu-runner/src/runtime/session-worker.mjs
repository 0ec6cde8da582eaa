// @ts-check
/**
 * The body of one session thread (threaded-session.ts): it opens one onnxruntime session and runs it, one run at a
 * time, for the event loop that started it. onnxruntime-node's `session.run` executes synchronously on the thread
 * that calls it (its promise only defers the call with setImmediate), so a run here blocks this thread and not the
 * runner's HTTP side.
 *
 * Plain JavaScript on purpose: a TypeScript entry would need tsx's loader in every thread (about 1.5 s per thread
 * on the 2-core machine, against 0.25 s). The messages are typed in session-wire.ts.
 * @module
 */
import { getPriority, setPriority } from 'node:os'
import { parentPort } from 'node:worker_threads'
import * as ort from 'onnxruntime-node'

/** @typedef {import('./session-wire.ts').OpenMessage} OpenMessage */
/** @typedef {import('./session-wire.ts').ToWorker} ToWorker */
/** @typedef {import('./session-wire.ts').FromWorker} FromWorker */
/** @typedef {import('./session-wire.ts').WireTensor} WireTensor */
/** @typedef {import('./session-wire.ts').ThreadPriority} ThreadPriority */

const port = parentPort
if (!port) throw new Error('session-worker.mjs runs only as a worker thread')

/** @param {unknown} err */
const firstLine = (err) => (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? ''

/**
 * onnxruntime refuses SharedArrayBuffer-backed arrays ("Invalid argument"): such feeds are copied here, on this
 * thread, into memory of its own.
 * @param {ort.Tensor.DataType} data
 * @returns {ort.Tensor.DataType}
 */
function ownData(data) {
  if (!ArrayBuffer.isView(data) || !(data.buffer instanceof SharedArrayBuffer)) return data
  const Ctor = /** @type {{ new (a: ArrayLike<unknown>): ort.Tensor.DataType }} */ (
    /** @type {unknown} */ (data.constructor)
  )
  return new Ctor(/** @type {ArrayLike<unknown>} */ (/** @type {unknown} */ (data)))
}

/**
 * Feeds the event loop keeps feeding (`keptAs`, ThreadedSession.keep): this thread's own copy of each, made on its
 * first run, reused until a 'forget' message drops it.
 * @type {Map<string, ort.Tensor>}
 */
const kept = new Map()

/**
 * @param {WireTensor} t
 * @returns {ort.Tensor}
 */
function feedOf(t) {
  const hit = t.keptAs === undefined ? undefined : kept.get(t.keptAs)
  if (hit) return hit
  const tensor = new ort.Tensor(
    /** @type {'float32'} */ (t.type),
    /** @type {Float32Array} */ (ownData(t.data)),
    [...t.dims],
  )
  if (t.keptAs !== undefined) kept.set(t.keptAs, tensor)
  return tensor
}

/**
 * @param {FromWorker} message
 * @param {ArrayBuffer[]} [transfer]
 */
function post(message, transfer = []) {
  try {
    port?.postMessage(message, transfer)
  } catch {
    // An output whose memory cannot be moved (an external buffer) is copied instead.
    port?.postMessage(message)
  }
}

/**
 * Lowers this thread's priority by `by` nice steps, before onnxruntime creates its intra-op threads from it: they
 * inherit it, and the event loop's thread (left as it was) preempts all of them when it wakes. Node's
 * `setPriority(0, n)` is setpriority(PRIO_PROCESS, 0, n), which on Linux acts on the calling thread only (nice is
 * per thread there, man 2 setpriority); elsewhere it would lower the whole process, event loop included, so it is
 * left alone. Relative to the inherited value, so that it never needs a privilege (only lowering nice does).
 * @param {number | undefined} by
 * @returns {ThreadPriority}
 */
function lowerPriority(by) {
  if (!by) return { lowered: 0 }
  if (process.platform !== 'linux')
    return {
      lowered: 0,
      note: `not lowered: nice is per thread only on Linux (here ${process.platform} would lower the event loop too)`,
    }
  try {
    const before = getPriority(0)
    const target = Math.min(19, before + by)
    if (target > before) setPriority(0, target)
    const lowered = getPriority(0) - before
    return lowered === by
      ? { lowered }
      : {
          lowered,
          note: `lowered by ${lowered}, not ${by}: the event loop runs at nice ${before}, and 19 is the end`,
        }
  } catch (err) {
    // Node's SystemError keeps the errno name (EACCES, ENOSYS) in `info.code`; `code` is ERR_SYSTEM_ERROR.
    const e = /** @type {{ info?: { code?: string }, code?: string }} */ (err)
    return {
      lowered: 0,
      note: `not lowered: setpriority failed (${e.info?.code ?? e.code ?? firstLine(err)})`,
    }
  }
}

/**
 * @param {OpenMessage} data
 * @returns {Promise<ort.InferenceSession | undefined>}
 */
async function open(data) {
  const priority = lowerPriority(data.lowerPriority)
  /** @type {string | undefined} */
  let fallbackReason
  for (const [i, providers] of data.attempts.entries()) {
    try {
      const options = { ...data.options, executionProviders: providers }
      const session =
        typeof data.model === 'string'
          ? await ort.InferenceSession.create(data.model, options)
          : await ort.InferenceSession.create(data.model, options)
      post({
        kind: 'opened',
        provider: providers[0] ?? 'cpu',
        ...(fallbackReason ? { fallbackReason } : {}),
        priority,
        inputNames: [...session.inputNames],
        outputNames: [...session.outputNames],
        inputMetadata: [...session.inputMetadata],
        outputMetadata: [...session.outputMetadata],
      })
      return session
    } catch (err) {
      if (i === data.attempts.length - 1) {
        post({ kind: 'open-failed', message: err instanceof Error ? err.message : String(err) })
        return undefined
      }
      fallbackReason ??= firstLine(err)
    }
  }
  return undefined
}

/**
 * @param {ort.InferenceSession} s
 * @param {Extract<ToWorker, { kind: 'run' }>} msg
 */
async function run(s, msg) {
  try {
    /** @type {Record<string, ort.Tensor>} */
    const feeds = {}
    for (const t of msg.feeds) feeds[t.name] = feedOf(t)
    const out = msg.fetches ? await s.run(feeds, [...msg.fetches]) : await s.run(feeds)
    /** @type {WireTensor[]} */
    const outputs = []
    /** @type {Set<ArrayBuffer>} */
    const transfer = new Set()
    for (const [name, t] of Object.entries(out)) {
      outputs.push({ name, type: t.type, dims: [...t.dims], data: t.data })
      if (ArrayBuffer.isView(t.data) && t.data.buffer instanceof ArrayBuffer)
        transfer.add(t.data.buffer)
    }
    post({ kind: 'result', id: msg.id, outputs }, [...transfer])
  } catch (err) {
    post({
      kind: 'error',
      id: msg.id,
      message: err instanceof Error ? err.message : String(err),
      ...(err instanceof Error && err.stack ? { stack: err.stack } : {}),
    })
  }
}

/** @type {ort.InferenceSession | undefined} */
let session
// Messages are handled one after the other: a run starts once the session is open and the previous run answered.
let queue = Promise.resolve()
port.on('message', (/** @type {ToWorker} */ msg) => {
  queue = queue.then(async () => {
    if (msg.kind === 'open') {
      session = await open(msg)
      // Nothing else to do here: let the thread end (the event loop's side sees open-failed).
      if (!session) port.close()
    } else if (msg.kind === 'run' && session) await run(session, msg)
    else if (msg.kind === 'forget') for (const key of msg.keys) kept.delete(key)
    else if (msg.kind === 'release') {
      await session?.release()
      post({ kind: 'released' })
      port.close()
    }
  })
})
