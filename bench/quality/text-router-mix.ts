/**
 * The text twin's router weights, re-weighted and served as an explicit mix: what the router probes
 * (text-bias-probe.ts, text-prior-probe.ts) share. A probe reads the package's router weights w once per split, then
 * serves softmax(log w + b) for the b it studies, which is what a router with b added after its sharpened logits
 * would serve, without a rebuild.
 * @module
 */
import { argmaxRows } from '@twinserve/gpu-runner/train'
import { controlsOf, encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { type TextSplit, type TextZooManifest, textZooPath } from '@twinserve/zoo/text'
import { openCpu, type Session } from './evaluate.ts'
import { type TextTaskData, textFeeds } from './text-evaluate.ts'

const CHUNK = 512

/** The index of the largest of row i's first k logits (a task reads the first K_t of the model's logits). */
export function argmaxFirst(l: Float32Array, width: number, k: number, i: number): number {
  let best = 0
  for (let j = 1; j < k; j++)
    if ((l[i * width + j] as number) > (l[i * width + best] as number)) best = j
  return best
}

/**
 * Each expert's own answer on every text of a split: correct[e][t][i] = 1 when expert e (its own ONNX file) answers
 * text i of task t right on task t's classes. What the routing probes cost a misroute with.
 */
export async function expertCorrect(
  zoo: TextZooManifest,
  tasks: readonly string[],
  data: readonly TextTaskData[],
): Promise<Uint8Array[][]> {
  const correct: Uint8Array[][] = []
  for (const e of tasks) {
    const session = await openCpu(
      textZooPath(zoo, zoo.tasks.find((t) => t.name === e)?.expert.file ?? ''),
    )
    const perTask: Uint8Array[] = []
    for (const d of data) {
      const out = (await session.run(textFeeds(d, 0, d.n))).logits
      const logits = out?.data as Float32Array
      const width = Number(out?.dims.at(-1))
      perTask.push(
        Uint8Array.from({ length: d.n }, (_, i) =>
          argmaxFirst(logits, width, d.classes, i) === d.labels[i] ? 1 : 0,
        ),
      )
    }
    correct.push(perTask)
    await session.release()
  }
  return correct
}

/** softmax(log w + b) per row of w [n, T]. */
export function biased(w: Float32Array, b: readonly number[]): Float32Array {
  const T = b.length
  const out = new Float32Array(w.length)
  for (let i = 0; i < w.length / T; i++) {
    let max = -Infinity
    const z = Array.from({ length: T }, (_, e) => {
      const v = Math.log(Math.max(w[i * T + e] as number, 1e-30)) + (b[e] as number)
      max = Math.max(max, v)
      return v
    })
    const ex = z.map((v) => Math.exp(v - max))
    const s = ex.reduce((a, x) => a + x, 0)
    for (let e = 0; e < T; e++) out[i * T + e] = (ex[e] as number) / s
  }
  return out
}

/** The router's weights on every text of a split, per task, [n, T]. */
export async function routerWeights(
  twin: Session,
  T: number,
  split: readonly TextTaskData[],
): Promise<Float32Array[]> {
  const out: Float32Array[] = []
  for (const d of split) {
    const w = new Float32Array(d.n * T)
    for (let start = 0; start < d.n; start += CHUNK) {
      const rows = Math.min(CHUNK, d.n - start)
      const feeds = {
        ...textFeeds(d, start, rows),
        ...encodeControls(
          Array(rows).fill({ useRouter: 1, topK: T }),
          T,
          controlsOf(twin.inputNames),
        ),
      }
      const r = await twin.run(feeds, [TWIN_OUTPUT_WEIGHTS])
      w.set(r[TWIN_OUTPUT_WEIGHTS]?.data as Float32Array, start * T)
    }
    out.push(w)
  }
  return out
}

/** Served normalised accuracy (soft mix) with the given mix weights per task, and router accuracy, as one line. */
export async function served(
  twin: Session,
  zoo: TextZooManifest,
  split: readonly TextTaskData[],
  weights: readonly Float32Array[],
  s: TextSplit,
): Promise<string> {
  const T = zoo.tasks.length
  const norm: number[] = []
  let routed = 0
  let n = 0
  for (const [t, d] of split.entries()) {
    let ok = 0
    const w = weights[t] as Float32Array
    for (let start = 0; start < d.n; start += CHUNK) {
      const rows = Math.min(CHUNK, d.n - start)
      const mix = Array.from({ length: rows }, (_, i) => ({
        mixWeights: Array.from(w.subarray((start + i) * T, (start + i + 1) * T)),
      }))
      const r = await twin.run(
        { ...textFeeds(d, start, rows), ...encodeControls(mix, T, controlsOf(twin.inputNames)) },
        ['logits'],
      )
      const l = r.logits?.data as Float32Array
      const width = Number(r.logits?.dims.at(-1))
      for (let i = 0; i < rows; i++)
        if (argmaxFirst(l, width, d.classes, i) === d.labels[start + i]) ok++
    }
    for (const p of argmaxRows(w, T)) if (p === t) routed++
    n += d.n
    norm.push(ok / d.n / (zoo.accuracy[d.name]?.[d.name]?.[s] ?? 1))
  }
  const mean = norm.reduce((a, b) => a + b, 0) / norm.length
  return `${(mean * 100).toFixed(1)} % (${norm.map((x) => (x * 100).toFixed(1)).join(' / ')}), router ${((routed / n) * 100).toFixed(1)} %`
}
