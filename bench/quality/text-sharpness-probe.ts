/**
 * What `router.sharpness` would do to a built text package, without rebuilding it: the package's twin graph with
 * its router's logits multiplied by each given factor before the softmax (a Mul inserted before every
 * `router/probs` Softmax, what the recipe option builds), served with its router (soft mix) on a split:
 * normalised accuracy per task. Factor 1 is the package as built; a large factor approaches top-1 routing.
 *
 *   node --import tsx bench/quality/text-sharpness-probe.ts <package folder> <val|test> <factor> [factor …]
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { type INodeProto, onnx } from '@twinserve/gpu-runner/onnx'

/** A graph or subgraph (what an If's branches hold). */
type IGraphProto = NonNullable<NonNullable<INodeProto['attribute']>[number]['g']>

import { readTextZoo, type TextSplit } from '@twinserve/zoo/text'
import { openCpu } from './evaluate.ts'
import { evaluateText, loadTextSplits, zooTokenizer } from './text-evaluate.ts'

const [dir = 'zoo/text/package', split = 'val', ...factors] = process.argv.slice(2)
const zoo = readTextZoo()
const tasks = zoo.tasks.map((t) => t.name)
const data = loadTextSplits(zoo, zooTokenizer(zoo), tasks, split as TextSplit)
const bytes = readFileSync(join(dir, 'model.onnx'))

/** Inserts logits × factor before each router softmax, in the graph and its subgraphs (the router gate's If). */
function sharpen(g: IGraphProto, factor: number): number {
  let done = 0
  const nodes: INodeProto[] = []
  for (const n of g.node ?? []) {
    for (const a of n.attribute ?? []) if (a.g) done += sharpen(a.g, factor)
    const input = n.input?.[0]
    if (n.opType === 'Softmax' && input && (n.output?.[0] ?? '').includes('router/probs')) {
      const k = `${input}_sharpness`
      g.initializer = [
        ...(g.initializer ?? []),
        { name: k, dataType: 1, dims: [], floatData: [factor] },
      ]
      nodes.push({ opType: 'Mul', input: [input, k], output: [`${k}_out`], name: `${k}_node` })
      n.input = [`${k}_out`]
      done++
    }
    nodes.push(n)
  }
  g.node = nodes
  return done
}

for (const f of factors.length > 0 ? factors : ['1']) {
  const model = onnx.ModelProto.decode(bytes)
  const factor = Number(f)
  const edits = sharpen(model.graph as IGraphProto, factor)
  const twin = await openCpu(onnx.ModelProto.encode(model).finish())
  const acc = await evaluateText(twin, data, { experts: tasks.length, mode: { kind: 'router' } })
  await twin.release()
  const norm = tasks.map(
    (t, i) => (acc.perTask[i] as number) / (zoo.accuracy[t]?.[t]?.[split as TextSplit] ?? 1),
  )
  console.log(
    `${dir} ${split}, logits × ${factor} (${edits} router softmax): normalised ${((norm.reduce((a, b) => a + b, 0) / norm.length) * 100).toFixed(1)} % (${norm.map((x) => (x * 100).toFixed(1)).join(' / ')})`,
  )
}
