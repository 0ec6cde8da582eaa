/**
 * `npm run bench:quality`: merge quality on real data, one reproducible report (issue #9, quality half). On the
 * Fashion-MNIST zoo, per task and on average: the base; each expert on its own task (the upper bound); the static
 * merges (linear, task_arithmetic, ties, dare_ties, consensus; lambda picked on the validation split); twin
 * packages at ranks 4, 16, 64 with the trained router (dense), its top-2, the prototype router and an oracle
 * one-hot router; the committed demo package; and the quality–cost frontier (issue #18, frontier.ts: fixed ranks,
 * byte budgets, trained / prototype / data-free routers; accuracy, bytes, latency vs shared, Pareto points).
 * Absolute and normalised accuracy (merged / expert × 100), router accuracy, storage. Then the demo package's quality-per-byte levers measured on VALIDATION, and the
 * float16 factor storage checked against float32. Test data is only ever used to report.
 *
 *   npm run bench:quality                          # regenerates its section of bench/RESULTS.md
 *   npm run bench:quality -- --no-write            # prints only
 *   npm run bench:quality -- --ranks 4,16,64 --skip-levers
 *   npm run bench:quality -- --budgets 0.1,0.25 --frontier-ranks 16    # the frontier table's configurations
 *   npm run bench:quality -- --only text           # the text zoo only (issue #13), about 30 minutes on 2 busy cores
 *   npm run bench:quality -- --only text --quick   # without its levers and rank-16 arm: about 12 minutes
 *   npm run bench:quality -- --only text-frontier  # the text zoo's quality–cost frontier (issue #18), cached per arm
 *   npm run bench:quality -- --only text-frontier --text-arms 'package router'  # build only those arms; the rest from the cache
 *   npm run bench:quality -- --only lm             # the LM zoo's perplexity (issue #14), about 15–20 minutes on 2 busy cores
 *   npm run bench:quality -- --only lm --prompt-ids 32   # the conditional protocol's prompt: the first n ids (default 32)
 *   npm run bench:quality -- --only lm --lm-skip-ranks   # without the rank-16/96 lever builds (the slowest arms)
 *   npm run bench:quality -- --only lm --lm-max-docs 4 --lm-skip-ranks   # smoke check (4 docs per domain; never written)
 *   npm run bench:quality -- --only regmean        # RegMean vs task arithmetic / TIES, static and as the twin's shared model
 *   npm run bench:quality -- --only regmean-text   # the same on the text zoo
 *
 * The text zoo (zoo/text, six PyTorch-exported classifiers) has its own section, `bench:quality:text` (text-run.ts);
 * the LM zoo (zoo/lm, five decoder experts) `bench:quality:lm` (lm-run.ts).
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { recipeGrams } from '@twinserve/gpu-runner/build'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { ort } from '@twinserve/gpu-runner/runtime'
import { parseRecipe, type RecipeInput, SHARED_VARIANT } from '@twinserve/shared'
import YAML from 'yaml'
import { type Accuracy, evaluate, loadSplits, mean, openCpu, type TaskData } from './evaluate.ts'
import { checkFloat16 } from './float16-check.ts'
import { frontierArms, frontierTable, runFrontier } from './frontier.ts'
import { LEVER_STAGES, type LeverArm } from './levers.ts'
import { runLmQuality } from './lm-run.ts'
import { REGMEAN_ZOOS, runRegMeanQuality } from './regmean-arms.ts'
import {
  accuracyTable,
  dtypeTable,
  type LeverRow,
  lambdaTable,
  leverTable,
  mb,
  normalised,
  normalisedTable,
  pct,
  type Row,
} from './report.ts'
import { replaceSection } from './results-file.ts'
import { LAMBDA_GRID, runStaticMerge, STATIC_METHODS } from './static-merges.ts'
import { textFrontierSection } from './text-frontier-report.ts'
import { runTextQuality } from './text-run.ts'
import { ArmBuilder, applyChange, evaluateTwin, readRecipe } from './twin-arms.ts'
import { graphBytes, mergeValues, readZooModels } from './zoo-models.ts'

/** The quality-per-byte levers' rank pick (fc1 80, fc2 64, the head at its full 10): the float16 check's ranks. */
const FIXED_RANKS = { rank: 80, tensors: [{ match: 'fc2.weight', rank: 64 }] }

const { values } = parseArgs({
  options: {
    recipe: { type: 'string', default: 'zoo/fashion/recipe.yaml' },
    package: { type: 'string', default: 'zoo/fashion/package' },
    zoo: { type: 'string', default: 'zoo/fashion/models' },
    ranks: { type: 'string', default: '4,16,64' },
    'frontier-ranks': { type: 'string', default: '8,16,32,64' },
    budgets: { type: 'string', default: '0.05,0.055,0.1,0.25,0.4' },
    'skip-frontier': { type: 'boolean', default: false },
    results: { type: 'string', default: 'bench/RESULTS.md' },
    'budget-mb': { type: 'string', default: '10' },
    'no-write': { type: 'boolean', default: false },
    'skip-levers': { type: 'boolean', default: false },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    'text-recipe': { type: 'string', default: 'zoo/text/recipe.yaml' },
    'text-package': { type: 'string', default: 'zoo/text/package' },
    'text-budget-mb': { type: 'string', default: '40' },
    'text-budgets': { type: 'string', default: '0.05,0.1,0.25' },
    fresh: { type: 'boolean', default: false },
    'text-arms': { type: 'string' },
    'lm-recipe': { type: 'string', default: 'zoo/lm/recipe.yaml' },
    'lm-package': { type: 'string', default: 'zoo/lm/package' },
    'prompt-ids': { type: 'string', default: '32' },
    'lm-skip-ranks': { type: 'boolean', default: false },
    'lm-max-docs': { type: 'string' },
  },
})
const started = performance.now()
const log = (line: string) => process.stderr.write(`${line}\n`)
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`

const ZOOS = ['fashion', 'text', 'text-frontier', 'lm', 'regmean', 'regmean-text'] as const
if (values.only !== undefined && !(ZOOS as readonly string[]).includes(values.only)) {
  process.stderr.write(`bench:quality: --only takes ${ZOOS.join(', ')}, not '${values.only}'\n`)
  process.exit(2)
}
// `regmean` only when asked for: the full report's static and twin rows already cover the data-free methods.
const runs = (zoo: (typeof ZOOS)[number]) =>
  values.only === zoo || (values.only === undefined && !zoo.startsWith('regmean'))

/** Writes a zoo's section (its body's first paragraph gets the command, date and machine line). */
async function writeZooSection(id: string, command: string, body: string, wall: string) {
  const cpu =
    readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model
  const section = body.replace(
    /\n\n/,
    `\n\n- **Command:** \`${command}\` (this section is regenerated between its markers; ${wall} wall). ` +
      `**Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpu}", ` +
      `${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}, onnxruntime-node ${ort.env.versions.common}, **provider: CPU**. ` +
      'Other jobs may share the cores: times are upper bounds; accuracies and perplexities do not depend on load.\n',
  )
  process.stdout.write(`${section}\n`)
  if (!values['no-write']) {
    await replaceSection(resolve(values.results ?? ''), id, section)
    log(`wrote its section of ${values.results}`)
  }
}

if (runs('text')) {
  const t0 = performance.now()
  const text = await runTextQuality({
    recipe: values['text-recipe'] ?? '',
    package: values['text-package'] ?? '',
    budget: Number(values['text-budget-mb']) * 1e6,
    quick: values.quick ?? false,
    log,
  })
  await writeZooSection(
    'bench:quality:text',
    `npm run bench:quality -- --only text${values.quick ? ' --quick' : ''}`,
    text,
    `${((performance.now() - t0) / 1000).toFixed(0)} s`,
  )
}
if (runs('text-frontier')) {
  const t0 = performance.now()
  const body = await textFrontierSection({
    recipe: values['text-recipe'] ?? '',
    budgets: (values['text-budgets'] ?? '').split(',').filter(Boolean).map(Number),
    cacheDir: resolve('bench/.cache/text-frontier'),
    fresh: values.fresh ?? false,
    ...(values['text-arms'] ? { only: values['text-arms'] } : {}),
    log,
  })
  await writeZooSection(
    'bench:quality:text-frontier',
    'npm run bench:quality -- --only text-frontier',
    body,
    `${((performance.now() - t0) / 1000).toFixed(0)} s`,
  )
}
if (runs('lm')) {
  const t0 = performance.now()
  const promptIds = Number(values['prompt-ids'])
  if (!Number.isInteger(promptIds) || promptIds < 1) {
    process.stderr.write(
      `bench:quality: --prompt-ids takes a positive integer, not '${values['prompt-ids']}'\n`,
    )
    process.exit(2)
  }
  const skipRanks = values['lm-skip-ranks'] ?? false
  const maxDocs = values['lm-max-docs'] === undefined ? undefined : Number(values['lm-max-docs'])
  // A smoke check's numbers are not the section's: it prints only.
  if (maxDocs !== undefined) values['no-write'] = true
  const lm = await runLmQuality({
    recipe: values['lm-recipe'] ?? '',
    package: values['lm-package'] ?? '',
    promptIds,
    skipRanks,
    ...(maxDocs === undefined ? {} : { maxDocs }),
    log,
  })
  await writeZooSection(
    'bench:quality:lm',
    `npm run bench:quality -- --only lm${promptIds === 32 ? '' : ` --prompt-ids ${promptIds}`}${skipRanks ? ' --lm-skip-ranks' : ''}${maxDocs === undefined ? '' : ` --lm-max-docs ${maxDocs}`}`,
    lm,
    `${((performance.now() - t0) / 1000).toFixed(0)} s`,
  )
}
/** RegMean against the data-free merges on one zoo (regmean-arms.ts), as its own section. */
async function regmeanSection<D>(
  only: 'regmean' | 'regmean-text',
  kind: Parameters<typeof runRegMeanQuality<D>>[0]['kind'],
  recipe: string,
) {
  const t0 = performance.now()
  const body = await runRegMeanQuality({ kind, recipe, log })
  await writeZooSection(
    `bench:quality:${only}`,
    `npm run bench:quality -- --only ${only}`,
    body,
    `${((performance.now() - t0) / 1000).toFixed(0)} s`,
  )
}
if (runs('regmean')) await regmeanSection('regmean', REGMEAN_ZOOS.fashion, values.recipe ?? '')
if (runs('regmean-text'))
  await regmeanSection('regmean-text', REGMEAN_ZOOS.text, values['text-recipe'] ?? '')
if (!runs('fashion')) process.exit(0)

const recipePath = resolve(values.recipe ?? '')
const recipe = await readRecipe(recipePath)

/**
 * The recipe's shared model as a plain graph (the frontier's latency baseline). A data-informed shared merge
 * (`regmean`, the demo recipe's since issue #18) needs the Grams `twinserve build` computes from the routing data.
 */
async function recipeSharedGraph(): Promise<Uint8Array> {
  const spec = parseRecipe(recipe).shared
  const grams = spec.method === 'regmean' ? await recipeGrams(recipePath) : undefined
  return graphBytes(zoo, mergeValues(zoo, spec, grams))
}
if (!existsSync(recipe.router.data)) {
  process.stderr.write(
    `bench:quality: no routing data at ${recipe.router.data}; \`npm run zoo\` writes it (about 2 minutes)\n`,
  )
  process.exit(2)
}
const tasks = recipe.experts.map((e) => e.name)
const T = tasks.length
const zoo = await readZooModels(
  recipe.base,
  recipe.experts.map((e) => ({ name: e.name, path: e.model })),
)
const data = { val: loadSplits(tasks, 'val'), test: loadSplits(tasks, 'test') }
log(`data loaded (${elapsed()})`)

/** JSON with object keys sorted, so equal settings compare equal whatever order they were written in. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x)
      ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b)))
      : x,
  )
}

/** Bytes of every file under a directory (the committed zoo: models, zoo.json, model card). */
function treeBytes(dir: string): number {
  let total = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? treeBytes(p) : statSync(p).size
  }
  return total
}
const zooBytes = treeBytes(resolve(values.zoo ?? ''))
const budget = Number(values['budget-mb']) * 1e6
const packageBudget = budget - zooBytes

async function plain(model: Uint8Array | string, split: readonly TaskData[]): Promise<Accuracy> {
  const s = await openCpu(model)
  try {
    return await evaluate(s, split)
  } finally {
    await s.release()
  }
}

// 1. Experts (the upper bound) and the base.
const expertTest: number[] = []
const expertVal: number[] = []
for (const [t, path] of zoo.expertPaths.entries()) {
  expertTest.push((await plain(path, data.test)).perTask[t] as number)
  expertVal.push((await plain(path, data.val)).perTask[t] as number)
}
const plainBytes = zoo.base.sizeBytes
const rows: Row[] = [
  {
    label: 'experts (each on its own task)',
    perTask: expertTest,
    storage: { package: zoo.expertBytes },
  },
  {
    label: 'base',
    perTask: (await plain(recipe.base, data.test)).perTask,
    storage: { package: plainBytes },
  },
]
log(`experts and base (${elapsed()})`)

// 2. Static merges, lambda on validation.
const statics = []
for (const m of STATIC_METHODS) {
  const r = await runStaticMerge(zoo, m, data)
  statics.push(r)
  rows.push({
    label: `static: ${m.label}${r.lambda === undefined ? '' : `, λ=${r.lambda}`}`,
    perTask: r.test.perTask,
    storage: { package: plainBytes },
  })
}
log(`static merges (${elapsed()})`)

// 3. Twin packages at each rank: trained router dense / top-2 / oracle, and the prototype router.
const builder = await ArmBuilder.open()
const ranks = (values.ranks ?? '').split(',').map(Number)
// Pinned, not the recipe's: the rank rows are float16 as they always were, whatever the demo recipe stores (since
// issue #18 it is a budget with int8 factors, a frontier point of its own).
const dtype = 'float16' as const
const rankTotals: number[] = []
try {
  for (const rank of ranks) {
    const exclusive = { rank, dtype }
    const mlp = await builder.build(applyChange(recipe, { exclusive }))
    const [dense, top2, oracle] = await evaluateTwin(mlp.model, T, data.test, [
      { kind: 'router' },
      { kind: 'router', topK: 2 },
      { kind: 'oracle' },
    ])
    const proto = await builder.build(
      applyChange(recipe, { exclusive, router: { kind: 'prototype' } }),
    )
    const [protoDense] = await evaluateTwin(proto.model, T, data.test, [{ kind: 'router' }])
    const storage = (b: typeof mlp) => ({
      model: b.report.sizes.files['model.onnx'] ?? 0,
      package: b.report.sizes.packageBytes,
    })
    const tag = `twin rank ${rank}`
    for (const [label, acc, b] of [
      ['trained router', dense, mlp],
      ['trained router, top-2', top2, mlp],
      ['prototype router', protoDense, proto],
      ['oracle one-hot router', oracle, mlp],
    ] as const)
      if (acc)
        rows.push({
          label: `${tag}: ${label}`,
          perTask: acc.perTask,
          ...(acc.routing ? { routing: acc.routing } : {}),
          storage: storage(b),
        })
    rankTotals.push(
      mlp.report.exclusive.reduce((a, r) => a + (r.ranks ?? []).reduce((x, y) => x + y, 0), 0),
    )
    log(`twin rank ${rank} (${elapsed()})`)
  }

  // 4. The committed demo package, as committed.
  const pkgDir = resolve(values.package ?? '')
  const pkg = await loadPackage(pkgDir)
  const pkgBytes = treeBytes(pkgDir)
  const [pDense, pTop2, pOracle] = await evaluateTwin(pkg.model, T, data.test, [
    { kind: 'router' },
    { kind: 'router', topK: 2 },
    { kind: 'oracle' },
  ])
  const [pShared] = await evaluateTwin(pkg.model, T, data.test, [{ kind: 'zero' }])
  const pkgStorage = { model: pkg.model.byteLength, package: pkgBytes }
  const demoRows: Row[] = []
  for (const [label, acc] of [
    ['trained router', pDense],
    ['trained router, top-2', pTop2],
    ['oracle one-hot router', pOracle],
    [`variant ${SHARED_VARIANT} (zero weights)`, pShared],
  ] as const)
    if (acc)
      demoRows.push({
        label: `demo package: ${label}`,
        perTask: acc.perTask,
        ...(acc.routing ? { routing: acc.routing } : {}),
        storage: pkgStorage,
      })
  for (const [name, bytes] of pkg.variants)
    if (name !== SHARED_VARIANT)
      demoRows.push({
        label: `demo package: variant ${name} (static, A/B arm)`,
        perTask: (await plain(bytes, data.test)).perTask,
        storage: pkgStorage,
      })
  rows.push(...demoRows)
  const sameRecipe =
    JSON.stringify(pkg.manifest.recipe) ===
    JSON.stringify(parseRecipe(YAML.parse(readFileSync(recipePath, 'utf8'))))
  log(`demo package (${elapsed()})`)

  // 4b. The quality–cost frontier (issue #18): ranks, budgets and routers; accuracy, bytes, latency vs shared.
  const list = (v: string | undefined) => (v ?? '').split(',').filter(Boolean).map(Number)
  const frontier = values['skip-frontier']
    ? []
    : await runFrontier({
        recipe,
        arms: frontierArms(recipe, list(values['frontier-ranks']), list(values.budgets)),
        builder,
        data,
        expert: { val: expertVal, test: expertTest, bytes: zoo.expertBytes },
        shared: await recipeSharedGraph(),
        log: (line) => log(`${line} (${elapsed()})`),
      })

  // 5. Quality per byte, on VALIDATION: stage by stage from the previous demo configuration.
  const leverRows: LeverRow[] = []
  let picked: RecipeInput = applyChange(recipe, LEVER_STAGES[0]?.arms[0]?.change ?? {})
  if (!values['skip-levers'])
    for (const stage of LEVER_STAGES) {
      const stageRows: (LeverRow & { recipe: RecipeInput })[] = []
      let base = picked
      for (const arm of stage.arms as LeverArm[]) {
        const r = applyChange(base, arm.change)
        if (stage.cumulative) base = r
        const b = await builder.build(r)
        const [routed, oracle] = await evaluateTwin(b.model, T, data.val, [
          { kind: 'router' },
          { kind: 'oracle' },
        ])
        const packageBytes = b.report.sizes.packageBytes
        stageRows.push({
          stage: stage.name,
          label: arm.label,
          packageBytes,
          modelBytes: b.report.sizes.files['model.onnx'] ?? 0,
          inBudget: packageBytes <= packageBudget,
          oracle: mean(oracle?.perTask ?? []),
          routed: mean(routed?.perTask ?? []),
          routedNormalised: mean(normalised(routed?.perTask ?? [], expertVal)),
          routerAccuracy: mean(routed?.routing ?? []),
          picked: false,
          recipe: r,
        })
        log(`lever ${stage.name}: ${arm.label} (${elapsed()})`)
      }
      const choice = stage.cumulative
        ? stageRows.at(-1)
        : stageRows
            .filter((x) => x.inBudget)
            .reduce<(typeof stageRows)[number] | undefined>(
              (a, x) =>
                !a ||
                x.routedNormalised > a.routedNormalised ||
                (x.routedNormalised === a.routedNormalised && x.packageBytes < a.packageBytes)
                  ? x
                  : a,
              undefined,
            )
      if (choice) {
        choice.picked = true
        picked = choice.recipe
      }
      leverRows.push(...stageRows.map(({ recipe: _r, ...row }) => row))
    }
  // What the levers decide, compared key order-free (parsed, so defaults count as written).
  const decided = (r: RecipeInput) => {
    const p = parseRecipe(r)
    return canonical({
      exclusive: p.exclusive,
      router: { ...p.router, data: '' },
      shared_file: p.shared_file,
    })
  }
  const committedMatchesPick = decided(picked) === decided(recipe)

  // 6. Float16 factor storage vs float32, same configuration otherwise.
  // At fixed ranks: under a byte budget a cheaper dtype buys more rank, and this check compares storage alone.
  const f32 = await builder.build(
    applyChange(recipe, { exclusive: { ...FIXED_RANKS, dtype: 'float32' } }),
  )
  const f16 = await builder.build(
    applyChange(recipe, { exclusive: { ...FIXED_RANKS, dtype: 'float16' } }),
  )
  const dtypeCheck = await checkFloat16(
    [
      { label: 'float32', bytes: f32.model },
      { label: 'float16 + Cast', bytes: f16.model },
    ],
    T,
    data.val[0] as TaskData,
  )
  log(`float16 check (${elapsed()})`)

  // 7. The report.
  const cpu =
    readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model
  const seconds = (performance.now() - started) / 1000
  const demoDense = demoRows[0]
  const demoNorm = demoDense ? mean(normalised(demoDense.perTask, expertTest)) : 0
  const bestStatic = statics.reduce((a, s) => (mean(s.test.perTask) > mean(a.test.perTask) ? s : a))
  const bestStaticNorm = mean(normalised(bestStatic.test.perTask, expertTest))
  const shared = recipe.shared
  const out: string[] = []
  out.push('## Merge quality on real data (Fashion-MNIST zoo)')
  out.push('')
  out.push(
    `- **Command:** \`npm run bench:quality${values.only === 'fashion' ? ' -- --only fashion' : ''}\` (this section is regenerated between its markers; ${seconds.toFixed(0)} s wall). ` +
      `**Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpu}", ` +
      `${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}, onnxruntime-node ${ort.env.versions.common}, **provider: CPU**. ` +
      'Other helpers’ jobs may share the cores: times are upper bounds; accuracies do not depend on load.',
  )
  out.push(
    `- **Data:** the zoo's tasks (\`${tasks.join('`, `')}\`). **Test** = each task's test split ` +
      `(${data.test.map((d) => d.split.n).join(' / ')} examples), used only to report. **Validation** = each task's ` +
      `val split carved from the training data (${data.val.map((d) => d.split.n).join(' / ')}), used for every choice: ` +
      "the static merges' lambda and the demo package's levers. The router trains on the routing data " +
      "(training split) with its own early-stopping split. Normalised = merged / expert × 100 per task, then averaged (Twin-Merging's Eq. 4).",
  )
  out.push(
    `- **Twin arms** are built by \`twinserve build\` from \`${values.recipe}\` with only the rank changed (uniform, factors ${dtype}; ` +
      `shared = ${shared?.method ?? 'task_arithmetic'}${shared && 'lambda' in shared ? ` λ=${shared.lambda}` : ''}${shared && 'alpha' in shared ? ` α=${shared.alpha}` : ''}); the prototype router is its own build. ` +
      '"trained router" mixes all experts with the router\'s softmax (Twin-Merging\'s dense merge), "top-2" keeps its two largest weights, ' +
      '"oracle" feeds the true task one-hot (compression cost alone). Router accuracy = how often the largest applied weight is the true task. ' +
      `Storage: "model" = the twin graph file, "stored" = the whole package (manifest and static variant files included) or one plain graph; experts = ${mb(zoo.expertBytes)} MB for ${T} files.`,
  )
  out.push('')
  out.push(
    `**Headline (test):** the committed demo package (\`${values.package}\`, ${mb(pkgBytes)} MB = ${pct(pkgBytes / zoo.expertBytes, 0)}% of the experts) ` +
      `with its trained router reaches **${pct(mean(demoDense?.perTask ?? []))}% mean accuracy, ${pct(demoNorm)}% normalised** ` +
      `(goal ≥ 97%), router accuracy ${pct(mean(demoDense?.routing ?? []))}%; the best static merge (${bestStatic.method.label}${bestStatic.lambda === undefined ? '' : `, λ=${bestStatic.lambda}`}) ` +
      `reaches ${pct(mean(bestStatic.test.perTask))}% (${pct(bestStaticNorm)}% normalised). Committed zoo + package: ` +
      `${mb(zooBytes)} + ${mb(pkgBytes)} = ${mb(zooBytes + pkgBytes)} MB (budget ${mb(budget)} MB). ` +
      `The package was built from the current recipe: ${sameRecipe ? 'yes' : '**no** (rebuild with `npm run demo:package`)'}.`,
  )
  out.push('')
  out.push('Test accuracy, % (absolute):')
  out.push('')
  out.push(accuracyTable(tasks, rows))
  out.push('')
  out.push(
    'Test accuracy normalised to each expert on its own task, %, with router accuracy and storage:',
  )
  out.push('')
  out.push(normalisedTable(tasks, rows, expertTest, zoo.expertBytes))
  out.push('')
  out.push(
    `Total rank per tensor and expert at ranks ${ranks.join(', ')}: the 128×10 head is capped at its full rank 10 (so it is exact); ` +
      `Σ ranks over tensors and experts = ${rankTotals.join(', ')}.`,
  )
  out.push('')
  if (frontier.length > 0) {
    const best = frontier
      .filter((r) => r.packageBytes <= 0.25 * zoo.expertBytes)
      .reduce<(typeof frontier)[number] | undefined>(
        (a, r) => (!a || r.valNormalised > a.valNormalised ? r : a),
        undefined,
      )
    out.push(
      `**Quality–cost frontier** (issue #18): one package per configuration, built from \`${values.recipe}\` with float16 factors (int8 in the rows that say so: one scale per rank component, folded into σ), ` +
        'no static variants and no shared file (package = twin graph + manifest, the router included); "budget b" is `exclusive: { budget: b }`, ' +
        "the exclusive knowledge's bytes as a fraction of the experts' (the shared model's 0.94 MB and the router come on top); the data-free router " +
        'is built from the factors of fc1 and reads the pixels (no routing data). Latency: each package and the shared model (a plain graph) in its own ' +
        `onnxruntime session (CPU, spinning off), routed rows, every session run back to back run by run, ratio of medians. Pareto (✓, bold): no other ` +
        'configuration has both higher **validation** accuracy and fewer bytes. ' +
        (best
          ? `Best at ≤ 25% of the experts' bytes (validation): ${best.label}, ${pct(best.valNormalised)}% validation / ${pct(best.testNormalised)}% test normalised at ${pct(best.packageBytes / zoo.expertBytes)}%.`
          : "No configuration fits in 25% of the experts' bytes."),
    )
    out.push('')
    out.push(frontierTable(frontier, zoo.expertBytes))
    out.push('')
  }
  out.push(
    'Static merges: mean **validation** accuracy (%) over the lambda grid; the picked lambda (bold) is the one the test rows use:',
  )
  out.push('')
  out.push(
    lambdaTable(
      LAMBDA_GRID,
      statics.map((s) => ({ label: s.method.label, validation: s.validation, lambda: s.lambda })),
    ),
  )
  out.push('')
  if (!values['skip-levers']) {
    out.push(
      `Quality per byte of the demo package, on the **validation** split (package budget = ${mb(budget)} MB − ${mb(zooBytes)} MB of zoo = ${mb(packageBudget)} MB). ` +
        "Each stage starts from the previous stages' picks (✓: best routed normalised accuracy inside the budget; the storage stage applies its steps in turn):",
    )
    out.push('')
    out.push(leverTable(leverRows))
    out.push('')
    out.push(
      `The committed recipe (\`${values.recipe}\`) ${committedMatchesPick ? 'is' : '**is not**'} the validation pick: \`${decided(picked)}\`.` +
        (committedMatchesPick
          ? ''
          : ' Since issue #18 the demo recipe is the frontier\'s cheapest point at ≥ 97% validation normalised (docs/user-guide.md, "Choosing a configuration"), not the most accurate one inside the 10 MB budget that these stages pick.'),
    )
    out.push('')
  }
  const [a32, a16] = dtypeCheck.arms
  out.push(
    `Float16 factors vs float32 at the quality-per-byte pick's fixed ranks (fc1 80, fc2 64), the demo recipe otherwise unchanged (routed twin graph, CPU, the two arms timed back to back run by run: ${dtypeCheck.rounds} rounds × ` +
      `${dtypeCheck.batch1Runs} batch-1 runs and ${dtypeCheck.batch256Runs} batch-256 runs each; rows/s from the median batch time). onnxruntime folds the Casts of the float16 ` +
      `initializers when it creates the session${a16 && a16.castsAfterOptimization === 0 ? ' (none left in the optimised graph)' : ''}, so serving computes in float32 as before; ` +
      `max |Δ logits| = ${dtypeCheck.maxAbsDiff.toExponential(2)} on logits up to ${dtypeCheck.scale.toFixed(1)}:`,
  )
  out.push('')
  out.push(dtypeTable(dtypeCheck))
  out.push('')
  if (a32 && a16)
    out.push(
      `Batch-1 p50 float16/float32 = ${(a16.batch1.p50 / a32.batch1.p50).toFixed(2)}× (${a16.batch1.p50.toFixed(3)} vs ${a32.batch1.p50.toFixed(3)} ms).`,
    )
  const text = out.join('\n')
  process.stdout.write(`${text}\n`)
  if (!values['no-write']) {
    await replaceSection(resolve(values.results ?? ''), 'bench:quality', text)
    log(`wrote its section of ${values.results}`)
  }
} finally {
  await builder.close()
}
