/**
 * onnxruntime-node behind one door (`@twinserve/gpu-runner/runtime`): sessions on CUDA or CPU, and `ort` itself.
 * @module
 */
export {
  type OpenedSession,
  openSession,
  ort,
  type Provider,
  type ProviderChoice,
  type SessionOptions,
  sessionOptions,
} from './ort-session.ts'
export type { ThreadPriority } from './session-wire.ts'
export {
  handOver,
  type OpenedThreadedSession,
  openThreadedSession,
  type RunnableSession,
  SessionThreadStopped,
  ThreadedSession,
  type ThreadedSessionOptions,
} from './threaded-session.ts'
