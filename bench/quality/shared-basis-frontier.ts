/**
 * The shared basis (recipe `exclusive.shared_basis`, issue #18) on the Fashion zoo's quality–cost frontier:
 * at each byte budget, the per-expert budget allocation (`exclusive.budget`, the frontier's existing arms) against
 * one shared basis per matrix whose rank R is the largest whose stored bytes fit the same budget, both with the
 * trained router; measured like every frontier arm (frontier.ts: normalised accuracy on validation and test,
 * package bytes against the experts', latency against the shared model at batch 1 and 8, all sessions timed
 * interleaved in one process). Writes its own section of bench/RESULTS.md.
 *
 *   node --import tsx bench/quality/shared-basis-frontier.ts [--budgets 0.05,0.1,0.25] [--no-write]
 *
 * Builds into a temporary directory (twin-arms.ts) and writes no cache; reads the zoo's routing data from
 * bench/.cache/zoo (written by `npm run zoo`).
 * @module
 */
import { existsSync, readFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { ort } from '@twinserve/gpu-runner/runtime'
import { parseRecipe } from '@twinserve/shared'
import { evaluate, loadSplits, openCpu } from './evaluate.ts'
import { type FrontierArm, frontierTable, runFrontier } from './frontier.ts'
import { replaceSection } from './results-file.ts'
import { ArmBuilder, readRecipe } from './twin-arms.ts'
import { graphBytes, mergeValues, readZooModels } from './zoo-models.ts'

const { values } = parseArgs({
  options: {
    recipe: { type: 'string', default: 'zoo/fashion/recipe.yaml' },
    budgets: { type: 'string', default: '0.05,0.1,0.25' },
    'int8-budgets': { type: 'string', default: '0.055' },
    runs: { type: 'string', default: '400' },
    results: { type: 'string', default: 'bench/RESULTS.md' },
    'no-write': { type: 'boolean', default: false },
  },
})
const started = performance.now()
const log = (line: string) =>
  process.stderr.write(`${line} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`)
const list = (v: string | undefined) => (v ?? '').split(',').filter(Boolean).map(Number)

const recipe = await readRecipe(resolve(values.recipe ?? ''))
if (!existsSync(recipe.router.data)) {
  process.stderr.write(`no routing data at ${recipe.router.data}; \`npm run zoo\` writes it\n`)
  process.exit(2)
}
const tasks = recipe.experts.map((e) => e.name)
const T = tasks.length
const zoo = await readZooModels(
  recipe.base,
  recipe.experts.map((e) => ({ name: e.name, path: e.model })),
)
const data = { val: loadSplits(tasks, 'val'), test: loadSplits(tasks, 'test') }

// The zoo's exclusive tensors (every MatMul weight and bias of the 784-256-128-10 MLP), from the base graph.
const shapes = [...zoo.baseValues.entries()].map(([name, v]) => {
  const t = zoo.base.initializers.get(name)
  return { name, dims: (t?.dims ?? []).map(Number), size: v.length }
})
const matrices = shapes.filter((s) => s.dims.length === 2).map((s) => s.dims as [number, number])
const vectorBytes =
  T * shapes.filter((s) => s.dims.length === 1).reduce((a, s) => a + s.size, 0) * 4

/** Stored bytes of the exclusive knowledge with one shared basis of rank R per matrix (cores float16 unless float32). */
function basisBytes(R: number, dtype: 'float16' | 'int8'): number {
  const factor = dtype === 'int8' ? 1 : 2
  return (
    vectorBytes +
    matrices.reduce((a, [rows, cols]) => {
      const ri = Math.min(R, rows, T * cols)
      const ro = Math.min(R, cols, T * rows)
      return a + (rows * ri + ro * cols) * factor + T * ri * ro * 2
    }, 0)
  )
}

/** The largest R whose bytes fit `budget` × the experts' bytes. */
function rankFor(budget: number, dtype: 'float16' | 'int8'): number {
  let R = 1
  while (basisBytes(R + 1, dtype) <= budget * zoo.expertBytes && R < 4096) R++
  return R
}

const arms: FrontierArm[] = []
for (const budget of list(values.budgets)) {
  arms.push({
    label: `budget ${budget}, per-expert ranks, trained router`,
    change: { exclusive: { budget, dtype: 'float16' } },
  })
  const rank = rankFor(budget, 'float16')
  arms.push({
    label: `shared basis R ${rank} (bytes of budget ${budget}), trained router`,
    change: { exclusive: { shared_basis: { rank }, dtype: 'float16' } },
  })
  arms.push({
    label: `shared basis, budget ${budget} (R per matrix), trained router`,
    change: { exclusive: { shared_basis: { budget }, dtype: 'float16' } },
  })
}
for (const budget of list(values['int8-budgets'])) {
  arms.push({
    label: `budget ${budget}, int8 per-expert ranks, trained router`,
    change: { exclusive: { budget, dtype: 'int8' } },
  })
  arms.push({
    label: `shared basis, int8, budget ${budget} (R per matrix), trained router`,
    change: { exclusive: { shared_basis: { budget }, dtype: 'int8' } },
  })
}

// The experts on their own tasks: the normalisation.
const expertVal: number[] = []
const expertTest: number[] = []
for (const [t, path] of zoo.expertPaths.entries()) {
  for (const [split, out] of [
    [data.val, expertVal],
    [data.test, expertTest],
  ] as const) {
    const s = await openCpu(path)
    out.push((await evaluate(s, split)).perTask[t] as number)
    await s.release()
  }
}
log('experts evaluated')

const builder = await ArmBuilder.open()
let rows: Awaited<ReturnType<typeof runFrontier>>
try {
  rows = await runFrontier({
    recipe,
    arms,
    builder,
    data,
    expert: { val: expertVal, test: expertTest, bytes: zoo.expertBytes },
    shared: graphBytes(zoo, mergeValues(zoo, parseRecipe(recipe).shared)),
    runs: Number(values.runs),
    log,
  })
} finally {
  await builder.close()
}
const seconds = (performance.now() - started) / 1000
const cpu =
  readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model
const command = `node --import tsx bench/quality/shared-basis-frontier.ts${values.budgets !== '0.05,0.1,0.25' ? ` --budgets ${values.budgets}` : ''}`
const section = [
  '### Shared basis across experts on the Fashion zoo (issue #18)',
  '',
  `- **Command:** \`${command}\` (this section is regenerated between its markers; ${seconds.toFixed(0)} s wall). ` +
    `**Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpu}", ` +
    `${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}, onnxruntime-node ${ort.env.versions.common}, **provider: CPU**. ` +
    'Other jobs may share the cores: latencies are upper bounds; accuracies do not depend on load.',
  '',
  `Each budget's per-expert allocation (\`exclusive: { budget }\`) against one basis per matrix shared by the ${T} experts plus a core per expert (\`exclusive: { shared_basis: { rank: R } }\`, R the largest whose stored bytes fit the same budget; \`shared_basis: { budget }\`: R per matrix, allocated by the energy of the experts' deltas each basis rank keeps per byte). Shapes: fc1 784×256, fc2 256×128, head 128×10; each side of a basis capped at its stacked matrix's rank, so the head's is at most 10 on the output side. Same demo recipe otherwise (trained router on hidden1, no variants, no shared file). Σ rank: per-expert ranks summed (for a shared basis, each expert's rank within it). Pareto (bold, ✓) among these rows only.`,
  '',
  frontierTable(rows, zoo.expertBytes),
].join('\n')
process.stdout.write(`${section}\n`)
if (!values['no-write']) {
  await replaceSection(resolve(values.results ?? ''), 'bench:quality:shared-basis', section)
  log(`wrote its section of ${values.results}`)
}
