/**
 * The committed Fashion demo package (zoo/fashion/package) scored as served, in about a minute: each expert on its
 * own task (the reference), then the package's twin graph with its router (dense softmax mix and top-2), with the
 * true task one-hot (oracle: the compression's cost alone) and at zero weights (the shared model), on the
 * validation and test splits; normalised = twin / expert per task, averaged (Twin-Merging's Eq. 4). The same
 * evaluation as `npm run bench:quality -- --only fashion`'s "demo package" rows, without that run's ~30 builds.
 *
 *   node --import tsx bench/quality/fashion-package-score.ts [package folder] [recipe]
 *     defaults: zoo/fashion/package, zoo/fashion/recipe.yaml (for the expert models)
 * @module
 */
import { readdirSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { markdownTable } from '@twinserve/gpu-runner/build'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { SHARED_VARIANT } from '@twinserve/shared'
import { type Accuracy, evaluate, loadSplits, mean, openCpu, type RoutingMode } from './evaluate.ts'
import { mb, normalised, pct } from './report.ts'
import { readRecipe } from './twin-arms.ts'

const pkgDir = resolve(process.argv[2] ?? 'zoo/fashion/package')
const recipe = await readRecipe(process.argv[3] ?? 'zoo/fashion/recipe.yaml')
const started = performance.now()

function treeBytes(dir: string): number {
  let total = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? treeBytes(p) : statSync(p).size
  }
  return total
}

const pkg = await loadPackage(pkgDir)
const tasks = pkg.manifest.experts.map((e) => e.name)
const expertFiles = tasks.map((t) => {
  const e = recipe.experts.find((x) => x.name === t)
  if (!e) throw new Error(`the recipe has no expert '${t}' (the package's)`)
  return e.model
})
const expertBytes = expertFiles.reduce((a, f) => a + statSync(f).size, 0)
const T = tasks.length

const modes: [string, RoutingMode][] = [
  ['trained router', { kind: 'router' }],
  ['trained router, top-2', { kind: 'router', topK: 2 }],
  ['oracle one-hot router', { kind: 'oracle' }],
  [`variant ${SHARED_VARIANT} (zero weights)`, { kind: 'zero' }],
]
const rows: string[][] = []
const summary: Record<string, { normalised: number; router?: number }> = {}
for (const split of ['val', 'test'] as const) {
  const data = loadSplits(tasks, split)
  const expert: number[] = []
  for (const [t, f] of expertFiles.entries()) {
    const s = await openCpu(f)
    try {
      expert.push((await evaluate(s, data)).perTask[t] as number)
    } finally {
      await s.release()
    }
  }
  const twin = await openCpu(pkg.model)
  try {
    for (const [label, mode] of modes) {
      const acc: Accuracy = await evaluate(twin, data, { experts: T, mode })
      const norm = mean(normalised(acc.perTask, expert))
      // Router accuracy averaged over tasks, as bench:quality's tables average it.
      const router = acc.routing ? mean(acc.routing) : undefined
      summary[`${split}: ${label}`] = {
        normalised: norm,
        ...(router !== undefined ? { router } : {}),
      }
      rows.push([
        split,
        label,
        pct(mean(acc.perTask)),
        `**${pct(norm)}**`,
        normalised(acc.perTask, expert)
          .map((x) => pct(x))
          .join(' / '),
        router === undefined ? '-' : pct(router),
      ])
    }
  } finally {
    await twin.release()
  }
}

const model = pkg.model.byteLength
const total = treeBytes(pkgDir)
console.log(
  `Package \`${process.argv[2] ?? 'zoo/fashion/package'}\` (version files: ${Object.keys(pkg.manifest.files).join(', ')}): ` +
    `twin graph ${mb(model)} MB = ${pct(model / expertBytes)}% of the experts' ${mb(expertBytes)} MB; whole package ${mb(total)} MB = ${pct(total / expertBytes)}%. ` +
    `Exclusive spec: \`${JSON.stringify((pkg.manifest.recipe as { exclusive?: unknown }).exclusive)}\`. Tasks: ${tasks.join(', ')}.`,
)
console.log('')
console.log(
  markdownTable(
    ['split', 'weights', 'mean accuracy', 'normalised', 'normalised per task', 'router acc.'],
    rows,
  ),
)
console.log('')
console.log(`${((performance.now() - started) / 1000).toFixed(0)} s`)
process.stderr.write(`${JSON.stringify(summary)}\n`)
