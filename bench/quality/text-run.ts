/**
 * The text zoo's half of `npm run bench:quality` (issue #13, "Quality on real text"): on zoo/text's six tasks, the
 * experts, the base, the static merges (λ picked on the validation splits), twin packages with the trained and the
 * prototype router (and top-2 and an oracle one-hot), the committed package, normalised per task, bytes of each;
 * the twin's levers (shared merge, router feature and training, rank) measured on VALIDATION; and what routing
 * costs in latency (shared model vs twin with weights given vs twin routing itself, batch 1 and 16). Returns
 * the markdown of its RESULTS.md section.
 * @module
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { loadPackage } from '@twinserve/gpu-runner/package'
import { parseMergeSpec, parseRecipe, type RecipeInput, SHARED_VARIANT } from '@twinserve/shared'
import { readTextZoo } from '@twinserve/zoo/text'
import YAML from 'yaml'
import { type Accuracy, mean, openCpu, type RoutingMode } from './evaluate.ts'
import type { LeverArm } from './levers.ts'
import {
  accuracyTable,
  type LeverRow,
  lambdaTable,
  leverTable,
  mb,
  normalised,
  normalisedTable,
  pct,
  type Row,
} from './report.ts'
import { measureRouterLatency, type RouterLatency } from './router-latency.ts'
import { LAMBDA_GRID, runStaticMerge, STATIC_METHODS } from './static-merges.ts'
import { evaluateText, loadTextSplits, type TextTaskData, zooTokenizer } from './text-evaluate.ts'
import { TEXT_FEATURES, TEXT_LEVER_STAGES } from './text-levers.ts'
import { ArmBuilder, applyChange, type BuiltArm, readRecipe } from './twin-arms.ts'
import { graphBytes, mergeValues, readZooModels } from './zoo-models.ts'

export interface TextQualityOptions {
  recipe: string
  package: string
  /** Committed budget for zoo/text (zoo + package), bytes. */
  budget: number
  /** Skip the lever stages and the rank-16 arm (about 12 minutes instead of about 30 on 2 busy cores). */
  quick: boolean
  log: (line: string) => void
}

function treeBytes(dir: string): number {
  let total = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    total += e.isDirectory() ? treeBytes(p) : statSync(p).size
  }
  return total
}

async function twinAccuracy(
  model: Uint8Array,
  T: number,
  data: readonly TextTaskData[],
  modes: readonly RoutingMode[],
): Promise<Accuracy[]> {
  const s = await openCpu(model)
  try {
    const out: Accuracy[] = []
    for (const mode of modes) out.push(await evaluateText(s, data, { experts: T, mode }))
    return out
  } finally {
    await s.release()
  }
}

async function plain(model: Uint8Array | string, data: readonly TextTaskData[]) {
  const s = await openCpu(model)
  try {
    return await evaluateText(s, data)
  } finally {
    await s.release()
  }
}

function latencyTable(l: RouterLatency): string {
  const base = l.arms[0]
  const head = `| arm | ${l.batches.map((b) => `batch ${b} p50 ms`).join(' | ')} | ${l.batches.map((b) => `vs shared, batch ${b}`).join(' | ')} |`
  const sep = `| --- | ${l.batches.map(() => '---').join(' | ')} | ${l.batches.map(() => '---').join(' | ')} |`
  const rows = l.arms.map(
    (a) =>
      `| ${a.label} | ${l.batches.map((b) => (a.p50[b] ?? 0).toFixed(3)).join(' | ')} | ${l.batches
        .map((b) => `${((a.p50[b] ?? 0) / (base?.p50[b] ?? 1)).toFixed(2)}×`)
        .join(' | ')} |`,
  )
  return [head, sep, ...rows].join('\n')
}

/** The router's share of a routed twin call: (routed − weights given) / routed, per batch. */
function routerShare(l: RouterLatency): string {
  const [, given, routed] = l.arms
  return l.batches
    .map((b) => {
      const r = routed?.p50[b] ?? 0
      const g = given?.p50[b] ?? 0
      return `batch ${b}: ${(r - g).toFixed(3)} ms = ${pct(r > 0 ? (r - g) / r : 0, 0)}%`
    })
    .join(', ')
}

export async function runTextQuality(o: TextQualityOptions): Promise<string> {
  const started = performance.now()
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`
  const recipe = await readRecipe(resolve(o.recipe))
  const tasks = recipe.experts.map((e) => e.name)
  const T = tasks.length
  const zooDir = resolve(recipe.base, '..')
  const zoo = readTextZoo(zooDir)
  const tokenizer = zooTokenizer(zoo)
  const data = {
    val: loadTextSplits(zoo, tokenizer, tasks, 'val'),
    test: loadTextSplits(zoo, tokenizer, tasks, 'test'),
  }
  const models = await readZooModels(
    recipe.base,
    recipe.experts.map((e) => ({ name: e.name, path: e.model })),
  )
  o.log(`text: data tokenized (${elapsed()})`)
  // What zoo/text commits besides the package (.cache is git-ignored).
  const zooRoot = resolve(zooDir, '..')
  const zooBytes =
    treeBytes(zooDir) +
    treeBytes(join(zooRoot, 'data')) +
    treeBytes(join(zooRoot, 'tooling')) +
    statSync(join(zooRoot, 'README.md')).size +
    statSync(resolve(o.recipe)).size

  // 1. Experts (the upper bound) and the base.
  const expertTest: number[] = []
  const expertVal: number[] = []
  for (const [t, path] of models.expertPaths.entries()) {
    expertTest.push((await plain(path, data.test)).perTask[t] as number)
    expertVal.push((await plain(path, data.val)).perTask[t] as number)
  }
  const plainBytes = models.base.sizeBytes
  const rows: Row[] = [
    {
      label: 'experts (each on its own task)',
      perTask: expertTest,
      storage: { package: models.expertBytes },
    },
    {
      label: 'base',
      perTask: (await plain(recipe.base, data.test)).perTask,
      storage: { package: plainBytes },
    },
  ]
  o.log(`text: experts and base (${elapsed()})`)

  // 2. Static merges, lambda on validation.
  const statics = []
  for (const m of STATIC_METHODS) {
    const r = await runStaticMerge(models, m, data, evaluateText)
    statics.push(r)
    rows.push({
      label: `static: ${m.label}${r.lambda === undefined ? '' : `, λ=${r.lambda}`}`,
      perTask: r.test.perTask,
      storage: { package: plainBytes },
    })
  }
  o.log(`text: static merges (${elapsed()})`)

  const builder = await ArmBuilder.open()
  try {
    // 3. The committed package as committed, and the recipe's twin at a lower rank.
    const pkgDir = resolve(o.package)
    const pkg = await loadPackage(pkgDir)
    const pkgBytes = treeBytes(pkgDir)
    const pkgStorage = { model: pkg.model.byteLength, package: pkgBytes }
    const [pDense, pTop2, pOracle, pShared] = await twinAccuracy(pkg.model, T, data.test, [
      { kind: 'router' },
      { kind: 'router', topK: 2 },
      { kind: 'oracle' },
      { kind: 'zero' },
    ])
    // The prototype router reads no bag of tokens and has no seeds to average: those mlp options are dropped.
    const proto = await builder.build(
      applyChange(recipe, {
        router: {
          kind: 'prototype',
          bag_of_tokens: undefined,
          bag_weighting: undefined,
          bag_bigrams: undefined,
          bag_bigrams_checked: undefined,
          ensemble: undefined,
          sharpness: undefined,
          dtype: undefined,
        },
      }),
    )
    const [pProto] = await twinAccuracy(proto.model, T, data.test, [{ kind: 'router' }])
    const committed: Row[] = []
    for (const [label, acc, storage] of [
      ['trained router', pDense, pkgStorage],
      ['trained router, top-2', pTop2, pkgStorage],
      [
        'prototype router (its own build)',
        pProto,
        {
          model: proto.report.sizes.files['model.onnx'] ?? 0,
          package: proto.report.sizes.packageBytes,
        },
      ],
      ['oracle one-hot router', pOracle, pkgStorage],
      [`variant ${SHARED_VARIANT} (zero weights)`, pShared, pkgStorage],
    ] as const)
      if (acc)
        committed.push({
          label: `text package: ${label}`,
          perTask: acc.perTask,
          ...(acc.routing ? { routing: acc.routing } : {}),
          storage,
        })
    for (const [name, bytes] of pkg.variants)
      if (name !== SHARED_VARIANT)
        committed.push({
          label: `text package: variant ${name} (static, A/B arm)`,
          perTask: (await plain(bytes, data.test)).perTask,
          storage: pkgStorage,
        })
    rows.push(...committed)
    if (!o.quick) {
      const low = await builder.build(
        // Rank 16 float16 factors (the package's were rank 64 float16 until text-route4k; now a byte budget).
        applyChange(recipe, { exclusive: { rank: 16, dtype: 'float16' } }),
      )
      const [lDense, lOracle] = await twinAccuracy(low.model, T, data.test, [
        { kind: 'router' },
        { kind: 'oracle' },
      ])
      const storage = {
        model: low.report.sizes.files['model.onnx'] ?? 0,
        package: low.report.sizes.packageBytes,
      }
      for (const [label, acc] of [
        ['trained router', lDense],
        ['oracle one-hot router', lOracle],
      ] as const)
        if (acc)
          rows.push({
            label: `twin rank 16: ${label}`,
            perTask: acc.perTask,
            ...(acc.routing ? { routing: acc.routing } : {}),
            storage,
          })
    }
    const sameRecipe =
      JSON.stringify(pkg.manifest.recipe) ===
      JSON.stringify(parseRecipe(YAML.parse(readFileSync(resolve(o.recipe), 'utf8'))))
    o.log(`text: twin packages (${elapsed()})`)

    // 4. The levers, on VALIDATION, stage by stage from the recipe as first committed.
    const leverRows: LeverRow[] = []
    const first: RecipeInput = applyChange(recipe, {
      shared: { method: 'task_arithmetic', lambda: 0.3 },
      // The router levers added since (pooling, bag of tokens, sharpness, ensemble) are reset to their defaults:
      // the stages measure from the recipe as it first was.
      router: {
        feature: undefined,
        hidden: [64],
        epochs: 40,
        lr: 0.002,
        patience: 8,
        max_per_expert: undefined,
        pooling: undefined,
        bag_of_tokens: undefined,
        bag_weighting: undefined,
        bag_bigrams: undefined,
        bag_bigrams_checked: undefined,
        sharpness: undefined,
        ensemble: undefined,
        weight_decay: undefined,
        dtype: undefined,
      },
      // Full-rank float16 factors on float32 shared weights, as first committed (the recipe's budgeted factors and
      // float16 shared weights came with text-route4k).
      exclusive: { rank: 64, dtype: 'float16' },
      shared_dtype: undefined,
    })
    let picked = first
    let earliest: BuiltArm | undefined
    if (!o.quick)
      for (const stage of TEXT_LEVER_STAGES) {
        const stageRows: (LeverRow & { recipe: RecipeInput })[] = []
        for (const arm of stage.arms as LeverArm[]) {
          const r = applyChange(picked, arm.change)
          const b = await builder.build(r)
          if (arm.change.router?.feature === TEXT_FEATURES.embeddings) earliest = b
          const [routed, oracle] = await twinAccuracy(b.model, T, data.val, [
            { kind: 'router' },
            { kind: 'oracle' },
          ])
          const packageBytes = b.report.sizes.packageBytes
          stageRows.push({
            stage: stage.name,
            label: arm.label,
            packageBytes,
            modelBytes: b.report.sizes.files['model.onnx'] ?? 0,
            inBudget: zooBytes + packageBytes <= o.budget,
            oracle: mean(oracle?.perTask ?? []),
            routed: mean(routed?.perTask ?? []),
            routedNormalised: mean(normalised(routed?.perTask ?? [], expertVal)),
            routerAccuracy: mean(routed?.routing ?? []),
            picked: false,
            recipe: r,
          })
          o.log(`text lever ${stage.name}: ${arm.label} (${elapsed()})`)
        }
        const choice = stageRows
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
    const decided = (r: RecipeInput) => {
      const p = parseRecipe(r)
      return JSON.stringify({
        shared: p.shared,
        exclusive: p.exclusive,
        router: { ...p.router, data: '' },
      })
    }
    const committedMatchesPick = decided(picked) === decided(recipe)

    // 5. What routing costs: the committed package, and the earliest-feature router when it was built.
    const sharedGraph = graphBytes(
      models,
      mergeValues(models, parseMergeSpec(recipe.shared ?? { method: 'task_arithmetic' })),
    )
    const latency = await measureRouterLatency(sharedGraph, pkg.model, T, data.test, {
      runs: o.quick ? 60 : 200,
    })
    const early = earliest
      ? await measureRouterLatency(sharedGraph, earliest.model, T, data.test, {
          runs: 200,
        })
      : undefined
    o.log(`text: router latency (${elapsed()})`)

    // 6. The report.
    const dense = committed[0]
    const denseNorm = dense ? mean(normalised(dense.perTask, expertTest)) : 0
    const bestStatic = statics.reduce((a, s) =>
      mean(s.test.perTask) > mean(a.test.perTask) ? s : a,
    )
    const feature = pkg.manifest.router.feature
    const out: string[] = []
    out.push('## Merge quality on real text (text zoo, issue #13)')
    out.push('')
    out.push(
      `- **Data:** zoo/text's six tasks (\`${tasks.join('`, `')}\`). **Test** = each task's test split (${data.test.map((d) => d.n).join(' / ')} texts), used only to report; ` +
        `**validation** = each task's val split (${data.val.map((d) => d.n).join(' / ')}), used for every choice (the static merges' λ, the levers). ` +
        'Texts are tokenized with the package tokenizer and input rule (`gpu-runner/src/text`, as served); task t reads the first K_t of the 4 logits. ' +
        'The router trains on `zoo/text/data/routing.jsonl` (2,000 train texts per task, disjoint from val and test) with its own early-stopping and held-out parts.',
    )
    out.push(
      `- **Twin rows** are \`twinserve build\` of \`${o.recipe}\` (the prototype router and rank 16 are their own builds, nothing else changed but the prototype router's bag of tokens, which it cannot read). ` +
        '"trained router" = the dense softmax mix; "top-2" keeps its two largest weights; "oracle" feeds the true task one-hot; "zero weights" = the shared model. ' +
        `Experts = ${mb(models.expertBytes)} MB for ${T} files.`,
    )
    out.push('')
    out.push(
      `**Headline (test):** the committed text package (\`${o.package}\`, ${mb(pkgBytes)} MB) with its trained router (on \`${feature}\`) reaches ` +
        `**${pct(mean(dense?.perTask ?? []))}% mean accuracy, ${pct(denseNorm)}% normalised** (goal ≥ 97%), router accuracy ${pct(mean(dense?.routing ?? []))}%; ` +
        `the best static merge (${bestStatic.method.label}${bestStatic.lambda === undefined ? '' : `, λ=${bestStatic.lambda}`}) reaches ${pct(mean(bestStatic.test.perTask))}% ` +
        `(${pct(mean(normalised(bestStatic.test.perTask, expertTest)))}% normalised). zoo/text committed: ${mb(zooBytes)} MB zoo + ${mb(pkgBytes)} MB package = ` +
        `${mb(zooBytes + pkgBytes)} MB (budget ${mb(o.budget)} MB). The package was built from the current recipe: ${sameRecipe ? 'yes' : '**no** (rebuild with `npm run text:package`)'}.`,
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
    out.push(normalisedTable(tasks, rows, expertTest, models.expertBytes))
    out.push('')
    out.push(
      'Static merges: mean **validation** accuracy (%) over the λ grid; the picked λ (bold) is the one the test rows use:',
    )
    out.push('')
    out.push(
      lambdaTable(
        LAMBDA_GRID,
        statics.map((s) => ({ label: s.method.label, validation: s.validation, lambda: s.lambda })),
      ),
    )
    out.push('')
    if (!o.quick) {
      out.push(
        `The twin's levers on the **validation** splits (normalised to the experts' validation accuracy: ${expertVal.map((a) => pct(a)).join(' / ')}). ` +
          "Each stage starts from the previous stages' picks (✓: best routed normalised accuracy; ties: fewer bytes); the first stage starts from the recipe as first committed (λ 0.3, MLP [64] on `/Div_output_0`, rank 64):",
      )
      out.push('')
      out.push(leverTable(leverRows))
      out.push('')
      out.push(
        committedMatchesPick
          ? `The committed recipe is the validation pick: \`${decided(picked)}\`.`
          : `These stages' validation pick is \`${decided(picked)}\`; the committed recipe is not it: its router goes on with levers these stages do not sweep (masked pooling, the tf-idf bag of tokens, a linear router, sharpness, the seed ensemble), chosen on validation by the text router probes after this section.`,
      )
      out.push('')
    }
    out.push(
      `**What routing costs** (CPU, one session per arm, ${latency.runs} interleaved runs per batch size, p50; test texts of \`${tasks[0]}\`, padded to 64 tokens). ` +
        `The router's share of a routed call (routed − weights given) on \`${feature}\`: ${routerShare(latency)}.`,
    )
    out.push('')
    out.push(latencyTable(latency))
    out.push('')
    if (early) {
      out.push(
        `The same with the router on the earliest tensor (\`${TEXT_FEATURES.embeddings}\`, the embeddings; its accuracy is in the lever table): router share ${routerShare(early)}.`,
      )
      out.push('')
      out.push(latencyTable(early))
      out.push('')
    }
    o.log(`text: done (${elapsed()})`)
    return out.join('\n')
  } finally {
    await builder.close()
  }
}
