/**
 * The messages between the event loop and a session thread (threaded-session.ts ⇄ session-worker.mjs). Tensors
 * cross as plain objects whose typed arrays are transferred (moved, not copied) or, for SharedArrayBuffer-backed
 * data such as cached merged weights, shared.
 * @module
 */
import type { ort } from './ort-session.ts'

/** One tensor on the wire: what `new ort.Tensor(type, data, dims)` takes. */
export interface WireTensor {
  name: string
  type: ort.Tensor.Type
  dims: readonly number[]
  data: ort.Tensor.DataType
  /**
   * A feed the session is fed again and again (`ThreadedSession.keep`): the thread keeps its own copy under this key
   * and reuses it, instead of copying the shared data on every run, until told to forget it.
   */
  keptAs?: string
}

/**
 * The thread's first message: what to open. A message rather than workerData, which a thread holds for its whole
 * life: the model's bytes (hundreds of MB) are dropped once the session is open.
 */
export interface OpenMessage {
  kind: 'open'
  /** A file path, or the graph's bytes (copied into the thread once). */
  model: string | Uint8Array
  /** Session options without `executionProviders`. */
  options: ort.InferenceSession.SessionOptions
  /** Provider lists to try in order (e.g. [['cuda'], ['cpu']]): the first that opens is used. */
  attempts: string[][]
  /**
   * Nice steps to lower the thread's priority by before the session opens (0 or absent: as the event loop). Linux
   * only: there, nice is per thread, and onnxruntime's intra-op threads, created by this thread, inherit it.
   */
  lowerPriority?: number
}

/** What became of `lowerPriority`: the steps the session's threads run below the event loop's thread. */
export interface ThreadPriority {
  /** Nice steps below the thread that started the session thread; 0 when not lowered. */
  lowered: number
  /** Why it is not what was asked for (platform, permission, the nice range's end). */
  note?: string
}

export type ToWorker =
  | OpenMessage
  | { kind: 'run'; id: number; feeds: WireTensor[]; fetches?: readonly string[] }
  /** Drops the thread's copies of kept feeds. */
  | { kind: 'forget'; keys: string[] }
  | { kind: 'release' }

export type FromWorker =
  | {
      kind: 'opened'
      /** The first provider of the attempt that opened. */
      provider: string
      /** Why the attempts before it failed (first line of the first failure). */
      fallbackReason?: string
      priority: ThreadPriority
      inputNames: string[]
      outputNames: string[]
      inputMetadata: ort.InferenceSession.ValueMetadata[]
      outputMetadata: ort.InferenceSession.ValueMetadata[]
    }
  | { kind: 'open-failed'; message: string }
  | { kind: 'result'; id: number; outputs: WireTensor[] }
  | { kind: 'error'; id: number; message: string; stack?: string }
  | { kind: 'released' }
