/**
 * Accuracy of a model on the zoo's task splits, through onnxruntime: plain graphs (experts, base, static merges)
 * and twin graphs under a routing mode (the true task one-hot, the embedded router dense or top-k, or all-zero
 * weights, which is the shared model exactly). For twin graphs it also reports how often the applied weights'
 * argmax is the example's true task (router accuracy).
 * @module
 */

import { openSession, ort } from '@twinserve/gpu-runner/runtime'
import { argmaxRows } from '@twinserve/gpu-runner/train'
import { controlsOf, encodeControls, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { loadTaskSplit, type TaskSplit, type ZooSplit } from '@twinserve/zoo/fashion'

/** The zoo models' input and output names. */
const INPUT = 'pixels'
const OUTPUT = 'logits'
const PIXELS = 784
const CLASSES = 10
/** Rows per run: big enough to amortise a call, small enough to keep memory flat. */
const CHUNK = 2000

export interface TaskData {
  name: string
  split: TaskSplit
}

/** Every task's split, in the order given (the experts' manifest order). */
export function loadSplits(tasks: readonly string[], split: ZooSplit): TaskData[] {
  return tasks.map((name) => ({ name, split: loadTaskSplit(name, split) }))
}

/**
 * How a twin graph picks each row's expert weights: `oracle` = one-hot of the row's true task, `router` = the
 * embedded router (dense, or its top `k`), `zero` = all-zero weights (the shared model).
 */
export type RoutingMode = { kind: 'oracle' } | { kind: 'router'; topK?: number } | { kind: 'zero' }

export interface Accuracy {
  /** Per task, in the order of the data. */
  perTask: number[]
  /** Twin graphs only: per task, fraction of rows whose applied weights' argmax is the true task. */
  routing?: number[]
}

export type Session = ort.InferenceSession

export async function openCpu(model: Uint8Array | string): Promise<Session> {
  return (await openSession(model, { provider: 'cpu' })).session
}

function twinFeeds(session: Session, rows: number, T: number, task: number, mode: RoutingMode) {
  const row: RowControls =
    mode.kind === 'oracle'
      ? { mixWeights: Array.from({ length: T }, (_, t) => (t === task ? 1 : 0)) }
      : mode.kind === 'router'
        ? { useRouter: 1, topK: mode.topK ?? T }
        : {}
  return encodeControls(Array(rows).fill(row), T, controlsOf(session.inputNames))
}

/**
 * Accuracy of `session` on every task of `data`. With `twin` (the number of experts T and a routing mode) the
 * session is a twin graph and gets the twin controls.
 */
export async function evaluate(
  session: Session,
  data: readonly TaskData[],
  twin?: { experts: number; mode: RoutingMode },
): Promise<Accuracy> {
  const perTask: number[] = []
  const routing: number[] = []
  for (const [t, { split }] of data.entries()) {
    let correct = 0
    let routed = 0
    for (let start = 0; start < split.n; start += CHUNK) {
      const rows = Math.min(CHUNK, split.n - start)
      const feeds: Record<string, ort.Tensor> = {
        [INPUT]: new ort.Tensor(
          'float32',
          split.x.subarray(start * PIXELS, (start + rows) * PIXELS),
          [rows, PIXELS],
        ),
        ...(twin ? twinFeeds(session, rows, twin.experts, t, twin.mode) : {}),
      }
      const out = await session.run(feeds, twin ? [OUTPUT, TWIN_OUTPUT_WEIGHTS] : [OUTPUT])
      const pred = argmaxRows(out[OUTPUT]?.data as Float32Array, CLASSES)
      for (let i = 0; i < rows; i++) if (pred[i] === split.y[start + i]) correct++
      if (twin) {
        const picked = argmaxRows(out[TWIN_OUTPUT_WEIGHTS]?.data as Float32Array, twin.experts)
        for (let i = 0; i < rows; i++) if (picked[i] === t) routed++
      }
    }
    perTask.push(correct / split.n)
    routing.push(routed / split.n)
  }
  return twin?.mode.kind === 'router' ? { perTask, routing } : { perTask }
}

export const mean = (xs: readonly number[]): number =>
  xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length
