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
import { readTextZoo, type TextSplit } from '@twinserve/zoo/text'
import { openCpu } from './evaluate.ts'
import { loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { biased, routerWeights, served } from './text-router-mix.ts'

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
const w = await routerWeights(twin, T, data[split])
const zero = new Array(T).fill(0)
console.log(
  `${split}, as built: ${await served(
    twin,
    zoo,
    data[split],
    w.map((x) => biased(x, zero)),
    split,
  )}`,
)
console.log(
  `${split}, corrected for ${n.join(' / ')} examples (b ${b.map((x) => x.toFixed(2)).join(', ')}): ${await served(
    twin,
    zoo,
    data[split],
    w.map((x) => biased(x, b)),
    split,
  )}`,
)
