/**
 * The committed text package (zoo/text/package) as served, its router routing every text (soft mix, all experts):
 * normalised accuracy (mean over tasks of twin / expert accuracy) and router accuracy on a split, in seconds.
 *
 *   node --import tsx bench/quality/text-package-score.ts [val|test] [package folder, default zoo/text/package]
 * @module
 */
import { join } from 'node:path'
import { readTextZoo, type TextSplit } from '@twinserve/zoo/text'
import { openCpu } from './evaluate.ts'
import { evaluateText, loadTextSplits, zooTokenizer } from './text-evaluate.ts'

const split = (process.argv[2] ?? 'val') as TextSplit
const zoo = readTextZoo()
const tasks = zoo.tasks.map((t) => t.name)
const data = loadTextSplits(zoo, zooTokenizer(zoo), tasks, split)
const twin = await openCpu(join(process.argv[3] ?? 'zoo/text/package', 'model.onnx'))
const acc = await evaluateText(twin, data, { experts: tasks.length, mode: { kind: 'router' } })
const norm = tasks.map((t, i) => (acc.perTask[i] as number) / (zoo.accuracy[t]?.[t]?.[split] ?? 1))
const routed = acc.routing ?? []
const n = data.reduce((a, d) => a + d.n, 0)
const router = data.reduce((a, d, i) => a + (routed[i] as number) * d.n, 0) / n
console.log(
  `${split}: normalised ${((norm.reduce((a, b) => a + b, 0) / norm.length) * 100).toFixed(1)} % (${norm.map((x) => (x * 100).toFixed(1)).join(' / ')}), router ${(router * 100).toFixed(1)} %`,
)
