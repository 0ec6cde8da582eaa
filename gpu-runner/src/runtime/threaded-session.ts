/**
 * An onnxruntime session in its own thread (node:worker_threads, one session per thread). onnxruntime-node 1.30's
 * `session.run` is synchronous on the calling thread (its promise only defers the call by one setImmediate:
 * `npm run bench:event-loop` measures the event loop stalled for the whole run), so a runner that runs sessions on
 * its event loop reads no request and answers no health check while a batch runs. Here the run happens in the
 * session's thread; the event loop only posts the feeds and receives the outputs.
 *
 * Feeds are copied into fresh memory and moved (transferred) to the thread, so the caller's arrays stay usable (a
 * batch that fails is rerun request by request from the same inputs); feeds backed by a SharedArrayBuffer (cached
 * merged weights, hundreds of MB) are shared instead, and the thread makes its own copy. Outputs are moved back.
 * @module
 */
import { Worker } from 'node:worker_threads'
import { cudaUnavailableReason } from './cuda-probe.ts'
import { ort, type Provider, type SessionOptions, sessionOptions } from './ort-session.ts'
import type {
  FromWorker,
  OpenMessage,
  ThreadPriority,
  ToWorker,
  WireTensor,
} from './session-wire.ts'

const WORKER_URL = new URL('./session-worker.mjs', import.meta.url)

type Outputs = Record<string, ort.Tensor>

/** What the runner needs of a session; onnxruntime's own InferenceSession has the same shape. */
export interface RunnableSession {
  readonly inputNames: readonly string[]
  readonly outputNames: readonly string[]
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[]
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[]
  run(feeds: Record<string, ort.Tensor>): Promise<Outputs>
  run(feeds: Record<string, ort.Tensor>, fetches: readonly string[]): Promise<Outputs>
  release(): Promise<void>
  /**
   * Feeds that will be given to many runs (a mix's merged matrices, generate/merged-mixes.ts), made so that a run
   * does not copy them: a session in a thread of its own keeps its copy there. Without it, feeds are used as given.
   */
  keep?(feeds: Record<string, ort.Tensor>): Record<string, ort.Tensor>
  /** Tells the session that feeds `keep` made will not be given again (their memory in the thread goes). */
  forget?(feeds: Record<string, ort.Tensor>): void
}

/** The session's thread is gone (released, or it crashed): the runner's fault, never the request's. */
export class SessionThreadStopped extends Error {
  override readonly name = 'SessionThreadStopped'
}

export interface OpenedThreadedSession {
  session: ThreadedSession
  provider: Provider
  /** Why CUDA was not used, when it was asked for (auto or cuda) and failed. */
  fallbackReason?: string
  /** How far below the event loop's thread the session's threads run (`lowerPriority`), and why not when not. */
  priority: ThreadPriority
}

/** Options of a session in its own thread, on top of onnxruntime's (SessionOptions). */
export interface ThreadedSessionOptions extends SessionOptions {
  /** Move the model's bytes to the thread instead of copying them (the caller no longer needs them). */
  transfer?: boolean
  /**
   * Nice steps (1–19) to run the session's thread, and the intra-op threads onnxruntime starts from it, below the
   * calling thread; default 0. On a host whose cores the intra-op threads fill, the event loop's thread then
   * preempts them as soon as it has work (a request, a health check) instead of waiting its turn. Linux only (a
   * note says why elsewhere); see session-worker.mjs.
   */
  lowerPriority?: number
}

/** Buffers whose owners gave them to their next run (`handOver`): moved to the thread, not copied. */
const handedOver = new WeakSet<ArrayBufferLike>()

/**
 * The caller will not read `arrays` again: a threaded run that feeds one of them moves its memory to the session
 * thread instead of copying it (the array is detached once the run is posted). Each array must span its whole
 * buffer. An in-process session ignores this. The generation engine hands over each decode pass's batched past,
 * megabytes per step at concurrency 32, which it never reads after the pass.
 */
export function handOver(arrays: readonly ArrayBufferView[]): void {
  for (const a of arrays)
    if (a.byteOffset === 0 && a.byteLength === a.buffer.byteLength) handedOver.add(a.buffer)
}

/** The key a kept feed's data goes by in its session's thread (`ThreadedSession.keep`). */
const keptKeys = new WeakMap<object, string>()
let nextKept = 1

/** Copies (or, when shared or handed over, passes) each feed's data for the wire; moved buffers go in `transfer`. */
function toWire(feeds: Record<string, ort.Tensor>): {
  tensors: WireTensor[]
  transfer: ArrayBuffer[]
} {
  const tensors: WireTensor[] = []
  const transfer: ArrayBuffer[] = []
  for (const [name, t] of Object.entries(feeds)) {
    let data = t.data
    if (ArrayBuffer.isView(data) && handedOver.has(data.buffer)) {
      handedOver.delete(data.buffer)
      transfer.push(data.buffer as ArrayBuffer)
    } else if (ArrayBuffer.isView(data) && !(data.buffer instanceof SharedArrayBuffer)) {
      // slice() copies into a buffer of exactly this array's size, which is then moved, not cloned.
      data = data.slice() as typeof data
      transfer.push((data as Float32Array).buffer as ArrayBuffer)
    }
    const keptAs = ArrayBuffer.isView(data) ? keptKeys.get(data) : undefined
    tensors.push({ name, type: t.type, dims: [...t.dims], data, ...(keptAs ? { keptAs } : {}) })
  }
  return { tensors, transfer }
}

function fromWire(outputs: readonly WireTensor[]): Outputs {
  const out: Outputs = {}
  for (const t of outputs)
    out[t.name] = new ort.Tensor(t.type as 'float32', t.data as Float32Array, [...t.dims])
  return out
}

/** The provider lists the thread tries, in order: the same policy as openSession (ort-session.ts). */
function attemptsFor(choice: SessionOptions['provider']): {
  attempts: string[][]
  probeReason?: string
} {
  if ((choice ?? 'auto') === 'cpu') return { attempts: [['cpu']] }
  // Probe before asking: onnxruntime prints a red loader error on CPU-only builds before it throws.
  const noCuda = cudaUnavailableReason()
  if (noCuda) return { attempts: [['cpu']], probeReason: noCuda }
  return { attempts: [['cuda'], ['cpu']] }
}

export class ThreadedSession implements RunnableSession {
  private readonly pending = new Map<
    number,
    { resolve: (o: Outputs) => void; reject: (e: Error) => void }
  >()
  private nextId = 1
  /** Set once the thread is gone (released, crashed or exited): every later run fails with it. */
  private stopped?: SessionThreadStopped
  private released?: Promise<void>

  private constructor(
    private readonly worker: Worker,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
    readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[],
    readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[],
  ) {
    worker.on('message', (msg: FromWorker) => this.onMessage(msg))
    worker.on('error', (err) =>
      this.stop(
        new SessionThreadStopped(`the onnxruntime session thread failed: ${err.message}`, {
          cause: err,
        }),
      ),
    )
    worker.on('exit', (code) =>
      this.stop(new SessionThreadStopped(`the onnxruntime session thread exited (code ${code})`)),
    )
    // An idle session thread does not keep the process alive (an in-process session does not either).
    worker.unref()
  }

  /**
   * Opens `model` in a new thread, on CUDA when asked for (or on `auto`) and loadable, CPU otherwise.
   * @throws Error with onnxruntime's message when no provider opens the model
   */
  static async open(
    model: Uint8Array | string,
    opts: ThreadedSessionOptions = {},
  ): Promise<OpenedThreadedSession> {
    const { attempts, probeReason } = attemptsFor(opts.provider)
    const { transfer, lowerPriority, ...sessionOpts } = opts
    const open: OpenMessage = {
      kind: 'open',
      model,
      options: sessionOptions(sessionOpts),
      attempts,
      ...(lowerPriority ? { lowerPriority } : {}),
    }
    // No inherited --import tsx and the like: the thread runs plain JavaScript (session-worker.mjs).
    const worker = new Worker(WORKER_URL, { execArgv: [] })
    const opened = await new Promise<Extract<FromWorker, { kind: 'opened' }>>((resolve, reject) => {
      const fail = (err: Error) => {
        worker.off('message', onMessage)
        reject(err)
      }
      const onMessage = (msg: FromWorker) => {
        worker.off('error', fail)
        worker.off('message', onMessage)
        if (msg.kind === 'opened') resolve(msg)
        else if (msg.kind === 'open-failed') reject(new Error(msg.message))
        else reject(new Error(`the session thread answered '${msg.kind}' before opening`))
      }
      worker.on('message', onMessage)
      worker.once('error', fail)
      worker.postMessage(
        open,
        transfer && typeof model !== 'string' ? [model.buffer as ArrayBuffer] : [],
      )
    }).catch(async (err: unknown) => {
      await worker.terminate()
      throw err
    })
    const session = new ThreadedSession(
      worker,
      opened.inputNames,
      opened.outputNames,
      opened.inputMetadata,
      opened.outputMetadata,
    )
    const provider: Provider = opened.provider === 'cuda' ? 'cuda' : 'cpu'
    const fallbackReason = opened.fallbackReason ?? probeReason
    return {
      session,
      provider,
      ...(fallbackReason ? { fallbackReason } : {}),
      priority: opened.priority,
    }
  }

  /** Runs the session in its thread; rejects with onnxruntime's error (same message as an in-process run). */
  run(feeds: Record<string, ort.Tensor>, fetches?: readonly string[]): Promise<Outputs> {
    if (this.stopped) return Promise.reject(this.stopped)
    const id = this.nextId++
    const { tensors, transfer } = toWire(feeds)
    const msg: ToWorker = { kind: 'run', id, feeds: tensors, ...(fetches ? { fetches } : {}) }
    return new Promise<Outputs>((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      // A run in progress keeps the process alive, as onnxruntime's own pending work would.
      if (this.pending.size === 1) this.worker.ref()
      this.worker.postMessage(msg, transfer)
    })
  }

  /**
   * Copies each feed once into shared memory under a key of its own: a run passes it without a copy (shared, not
   * transferred), and the thread copies it once (onnxruntime refuses shared memory) and keeps that copy for the
   * next runs, until `forget`. A merged mix's 3 MiB of matrices on zoo/lm would otherwise be copied on every decode
   * pass.
   */
  keep(feeds: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
    const out: Record<string, ort.Tensor> = {}
    for (const [name, t] of Object.entries(feeds)) {
      const data = t.data
      if (t.type !== 'float32' || !(data instanceof Float32Array)) {
        out[name] = t
        continue
      }
      const shared = new Float32Array(new SharedArrayBuffer(data.byteLength))
      shared.set(data)
      keptKeys.set(shared, `kept/${nextKept++}`)
      out[name] = new ort.Tensor('float32', shared, [...t.dims])
    }
    return out
  }

  forget(feeds: Record<string, ort.Tensor>): void {
    const keys = Object.values(feeds).flatMap((t) => {
      const key = ArrayBuffer.isView(t.data) ? keptKeys.get(t.data) : undefined
      return key ? [key] : []
    })
    if (keys.length > 0 && !this.stopped && !this.released)
      this.worker.postMessage({ kind: 'forget', keys } satisfies ToWorker)
  }

  /** Releases the session and ends its thread; runs already posted finish first. Idempotent. */
  release(): Promise<void> {
    this.released ??= (async () => {
      if (this.stopped) return
      const done = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()))
      this.worker.ref()
      this.worker.postMessage({ kind: 'release' } satisfies ToWorker)
      await done
    })()
    return this.released
  }

  private onMessage(msg: FromWorker): void {
    if (msg.kind === 'released') {
      this.stop(new SessionThreadStopped('the onnxruntime session was released'))
      return
    }
    if (msg.kind !== 'result' && msg.kind !== 'error') return
    const waiter = this.pending.get(msg.id)
    if (!waiter) return
    this.pending.delete(msg.id)
    if (this.pending.size === 0 && !this.released) this.worker.unref()
    if (msg.kind === 'result') waiter.resolve(fromWire(msg.outputs))
    else {
      const err = new Error(msg.message)
      if (msg.stack) err.stack = msg.stack
      waiter.reject(err)
    }
  }

  private stop(err: SessionThreadStopped): void {
    this.stopped ??= err
    for (const { reject } of this.pending.values()) reject(this.stopped)
    this.pending.clear()
  }
}

/** `ThreadedSession.open`, named like openSession (ort-session.ts). */
export function openThreadedSession(
  model: Uint8Array | string,
  opts: ThreadedSessionOptions = {},
): Promise<OpenedThreadedSession> {
  return ThreadedSession.open(model, opts)
}
