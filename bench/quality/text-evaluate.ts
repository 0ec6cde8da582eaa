/**
 * Accuracy of a text model on the text zoo's task splits, through onnxruntime: plain graphs (experts, base, static
 * merges) and twin graphs under a routing mode, as evaluate.ts does for the Fashion-MNIST zoo. Texts are tokenized
 * once, with the package tokenizer and input rule the builder and the runner use (`@twinserve/gpu-runner/text`),
 * so the bench scores exactly the ids a served request would carry. Task t reads the first K_t logits (its classes).
 * @module
 */
import { readFileSync } from 'node:fs'
import { ort } from '@twinserve/gpu-runner/runtime'
import { TextTokenizer } from '@twinserve/gpu-runner/text'
import { argmaxRows } from '@twinserve/gpu-runner/train'
import { controlsOf, encodeControls, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import {
  loadTextSplit,
  type TextSplit,
  type TextZooManifest,
  textZooPath,
} from '@twinserve/zoo/text'
import type { Accuracy, RoutingMode, Session } from './evaluate.ts'

const OUTPUT = 'logits'
/** Rows per run: the splits are small; 512 keeps a run's activations a few MB. */
const CHUNK = 512

export interface TextTaskData {
  name: string
  /** The task's classes: it reads the first `classes` logits. */
  classes: number
  n: number
  /** int64 [n, seq] each, row-major. */
  ids: BigInt64Array
  mask: BigInt64Array
  seq: number
  labels: Int32Array
}

/** The zoo's tokenizer under its input rule (README "Tokenizer"): what the recipe's `tokenizer` block says. */
export function zooTokenizer(zoo: TextZooManifest): TextTokenizer {
  const t = zoo.tokenizer
  return TextTokenizer.fromJson(
    readFileSync(textZooPath(zoo, t.file)),
    readFileSync(textZooPath(zoo, t.config)),
    {
      maxLength: t.max_length,
      padId: t.pad_id,
      truncation: true,
      idsInput: 'input_ids',
      maskInput: 'attention_mask',
    },
    'text zoo',
  )
}

/** Every task's split, tokenized, in the order given (the recipe's expert order). */
export function loadTextSplits(
  zoo: TextZooManifest,
  tokenizer: TextTokenizer,
  tasks: readonly string[],
  split: TextSplit,
): TextTaskData[] {
  return tasks.map((name) => {
    const rows = loadTextSplit(zoo, name, split)
    const enc = tokenizer.encodeBatch(
      rows.map((r) => r.text),
      (i) => `${name}/${split} line ${i + 1}`,
    )
    const classes = zoo.tasks.find((t) => t.name === name)?.classes.length ?? 0
    return {
      name,
      classes,
      n: rows.length,
      ids: enc.ids,
      mask: enc.mask,
      seq: enc.seq,
      labels: Int32Array.from(rows, (r) => r.label),
    }
  })
}

/** Rows [start, start + rows) of a task's token tensors as the model's two inputs. */
export function textFeeds(
  d: TextTaskData,
  start: number,
  rows: number,
): Record<string, ort.Tensor> {
  const slice = (a: BigInt64Array) => a.subarray(start * d.seq, (start + rows) * d.seq)
  return {
    input_ids: new ort.Tensor('int64', slice(d.ids), [rows, d.seq]),
    attention_mask: new ort.Tensor('int64', slice(d.mask), [rows, d.seq]),
  }
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

/** Index of the largest of the first `k` values of each `width`-wide row. */
function argmaxFirst(data: Float32Array, width: number, k: number, rows: number): Int32Array {
  const out = new Int32Array(rows)
  for (let i = 0; i < rows; i++) {
    let best = 0
    for (let j = 1; j < k; j++)
      if ((data[i * width + j] as number) > (data[i * width + best] as number)) best = j
    out[i] = best
  }
  return out
}

/**
 * Accuracy of `session` on every task of `data` (task t scored on its first K_t logits). With `twin` the session
 * is a twin graph and gets the twin controls; router accuracy is how often the applied weights' argmax is the task.
 */
export async function evaluateText(
  session: Session,
  data: readonly TextTaskData[],
  twin?: { experts: number; mode: RoutingMode },
): Promise<Accuracy> {
  const perTask: number[] = []
  const routing: number[] = []
  for (const [t, d] of data.entries()) {
    let correct = 0
    let routed = 0
    for (let start = 0; start < d.n; start += CHUNK) {
      const rows = Math.min(CHUNK, d.n - start)
      const feeds = {
        ...textFeeds(d, start, rows),
        ...(twin ? twinFeeds(session, rows, twin.experts, t, twin.mode) : {}),
      }
      const out = await session.run(feeds, twin ? [OUTPUT, TWIN_OUTPUT_WEIGHTS] : [OUTPUT])
      const logits = out[OUTPUT]
      const width = Number(logits?.dims.at(-1) ?? 0)
      const pred = argmaxFirst(logits?.data as Float32Array, width, d.classes, rows)
      for (let i = 0; i < rows; i++) if (pred[i] === d.labels[start + i]) correct++
      if (twin) {
        const picked = argmaxRows(out[TWIN_OUTPUT_WEIGHTS]?.data as Float32Array, twin.experts)
        for (let i = 0; i < rows; i++) if (picked[i] === t) routed++
      }
    }
    perTask.push(correct / d.n)
    routing.push(routed / d.n)
  }
  return twin?.mode.kind === 'router' ? { perTask, routing } : { perTask }
}
