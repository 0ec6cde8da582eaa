/**
 * What correcting the text twin's router for unequal routing data per expert would do, without a rebuild: the
 * package's router weights w on every text, then softmax(log w − s · ln n_e) given as the explicit mix (s the
 * recipe's sharpness, n_e expert e's routing examples). A softmax regression trained by cross-entropy learns
 * ln(prior) in its biases, so subtracting ln n_e routes as if every expert had as much data (logit adjustment,
 * Menon et al. 2021); the normalised score weighs every task the same. Served soft mix on a split.
 *
 *   node --import tsx bench/quality/text-prior-probe.ts <package> <val|test> <routing.jsonl> [max per expert]
 * @see https://arxiv.org/abs/2007.07314
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { argmaxRows } from '@twinserve/gpu-runner/train'
import { controlsOf, encodeControls } from '@twinserve/gpu-runner/twin-contract'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { readTextZoo, type TextSplit } from '@twinserve/zoo/text'
import { openCpu } from './evaluate.ts'
import { loadTextSplits, type TextTaskData, textFeeds, zooTokenizer } from './text-evaluate.ts'

const CHUNK = 512
const [dir = 'zoo/text/package', split0 = 'val', path = '', cap] = process.argv.slice(2)
const zoo = readTextZoo()
const tasks = zoo.tasks.map((t) => t.name)
const T = tasks.length
const tokenizer = zooTokenizer(zoo)
const data = {
  val: loadTextSplits(zoo, tokenizer, tasks, 'val'),
  test: loadTextSplits(zoo, tokenizer, tasks, 'test'),
} as const
const twin = await openCpu(join(dir, 'model.onnx'))

function argmaxFirst(l: Float32Array, width: number, k: number, i: number): number {
  let best = 0
  for (let j = 1; j < k; j++)
    if ((l[i * width + j] as number) > (l[i * width + best] as number)) best = j
  return best
}

/** The router's weights on every text of a split, per task, [n, T]. */
async function routerWeights(split: readonly TextTaskData[]): Promise<Float32Array[]> {
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

/** softmax(log w + b) per row. */
function biased(w: Float32Array, b: readonly number[]): Float32Array {
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

/** Served normalised accuracy (soft mix) with the given mix weights per task, and router accuracy. */
async function served(
  split: readonly TextTaskData[],
  weights: readonly Float32Array[],
  s: TextSplit,
) {
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

const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))
const s: number = manifest.recipe?.router?.sharpness ?? 1
const split = split0 as TextSplit
const counts = new Map<string, number>()
for (const line of readFileSync(path, 'utf8').split('\n')) {
  if (line === '') continue
  const e = (JSON.parse(line) as { expert: string }).expert
  counts.set(e, Math.min((counts.get(e) ?? 0) + 1, Number(cap ?? Number.POSITIVE_INFINITY)))
}
const n = tasks.map((t) => counts.get(t) ?? 1)
const b = n.map((c) => -s * Math.log(c / (n[0] as number)))
const w = await routerWeights(data[split])
const zero = new Array(T).fill(0)
console.log(
  `${split}, as built: ${await served(
    data[split],
    w.map((x) => biased(x, zero)),
    split,
  )}`,
)
console.log(
  `${split}, corrected for ${n.join(' / ')} examples (b ${b.map((x) => x.toFixed(2)).join(', ')}): ${await served(
    data[split],
    w.map((x) => biased(x, b)),
    split,
  )}`,
)
