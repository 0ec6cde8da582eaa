/**
 * What routing costs on text twin graphs, without the whole text bench: for each given twin graph (default: the
 * committed zoo/text/package), `measureRouterLatency` against the recipe's shared merge as a plain graph, batch 1
 * and 16 on the test texts of `spam` (padded to 64 tokens), and the router's share of a routed call
 * ((routed − weights given) / routed). Give two graphs (e.g. the previous package's model.onnx from git) to
 * compare routers on the same machine in one run.
 *
 *   node --import tsx bench/quality/text-router-latency.ts [model.onnx …]
 * @module
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseMergeSpec } from '@twinserve/shared'
import { readTextZoo } from '@twinserve/zoo/text'
import { measureRouterLatency } from './router-latency.ts'
import { loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { readRecipe } from './twin-arms.ts'
import { graphBytes, mergeValues, readZooModels } from './zoo-models.ts'

const RECIPE = 'zoo/text/recipe.yaml'
const graphs = process.argv.slice(2)
const recipe = await readRecipe(resolve(RECIPE))
const zoo = readTextZoo(resolve(recipe.base, '..'))
const tasks = recipe.experts.map((e) => e.name)
const test = loadTextSplits(zoo, zooTokenizer(zoo), tasks, 'test')
const models = await readZooModels(
  recipe.base,
  recipe.experts.map((e) => ({ name: e.name, path: e.model })),
)
const shared = graphBytes(
  models,
  mergeValues(models, parseMergeSpec(recipe.shared ?? { method: 'task_arithmetic' })),
)
for (const path of graphs.length > 0 ? graphs : ['zoo/text/package/model.onnx']) {
  const r = await measureRouterLatency(shared, readFileSync(path), tasks.length, test, {
    runs: 200,
  })
  console.log(`${path} (p50 ms over ${r.runs} interleaved runs)`)
  for (const a of r.arms)
    console.log(
      `  ${a.label}: ${r.batches.map((b) => `batch ${b} ${a.p50[b]?.toFixed(3)}`).join(', ')}`,
    )
  const [, given, routed] = r.arms
  for (const b of r.batches) {
    const cost = (routed?.p50[b] ?? 0) - (given?.p50[b] ?? 0)
    console.log(
      `  router share, batch ${b}: ${cost.toFixed(3)} ms = ${((cost / (routed?.p50[b] ?? 1)) * 100).toFixed(0)}%`,
    )
  }
}
