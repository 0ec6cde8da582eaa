/**
 * RegMean against the data-free merges on the Fashion zoo (issue #18, `npm run bench:quality -- --only regmean`):
 * as the static merge, with alpha picked on the validation split as the other methods' lambda is, and as the twin
 * package's shared model (the same exclusive-knowledge settings, only `shared` changed), at the demo recipe's
 * ranks and at the frontier's int8 budget point. RegMean's Gram matrices come from the routing data's train split,
 * as `twinserve build` computes them (recipeGrams); validation and test images are only scored.
 * @see https://arxiv.org/abs/2212.09849 (RegMean)
 * @module
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { markdownTable, recipeGrams } from '@twinserve/gpu-runner/build'
import { fisherMerge } from '@twinserve/gpu-runner/merge'
import { type MergeSpecInput, parseMergeSpec, type RecipeInput } from '@twinserve/shared'
import { readTextZoo } from '@twinserve/zoo/text'
import YAML from 'yaml'
import {
  type Accuracy,
  evaluate,
  loadSplits,
  mean,
  openCpu,
  type RoutingMode,
  type Session,
} from './evaluate.ts'
import { mlpFisher } from './fisher-mlp.ts'
import { mb, normalised, pct } from './report.ts'
import { runStaticMerge, type StaticResult } from './static-merges.ts'
import { evaluateText, loadTextSplits, zooTokenizer } from './text-evaluate.ts'
import { ArmBuilder, applyChange, type RecipeChange, readRecipe } from './twin-arms.ts'
import { graphBytes, mergeValues, readZooModels, type ZooModels } from './zoo-models.ts'

/** Examples per expert for the Fisher diagonals (FusionBench's default, 256). */
const FISHER_EXAMPLES = 256

/** RegMean's off-diagonal scale, searched on validation: 0 = per-input average … 1 = plain least squares. */
export const ALPHA_GRID: readonly number[] = [0, 0.5, 0.8, 0.9, 0.95, 1]

type Grams = Awaited<ReturnType<typeof recipeGrams>>

/** How one zoo's splits are loaded and scored: plain graphs, and twin graphs under a routing mode. */
interface ZooKind<D> {
  splits(recipe: RecipeInput, tasks: readonly string[]): { val: D; test: D }
  score(session: Session, data: D, twin?: { experts: number; mode: RoutingMode }): Promise<Accuracy>
  /** Each expert's diagonal Fisher by tensor name, where the benchmark can compute it (fisher-mlp.ts). */
  fisher?: (z: ZooModels, recipe: RecipeInput) => Promise<Map<string, Float32Array>[]>
  /** The twin configurations besides the recipe's own: the zoo's frontier point. */
  frontier: { label: string; change: RecipeChange }
  title: string
}

const FASHION: ZooKind<ReturnType<typeof loadSplits>> = {
  splits: (_r, tasks) => ({ val: loadSplits(tasks, 'val'), test: loadSplits(tasks, 'test') }),
  score: evaluate,
  fisher: (z, recipe) => mlpFisher(z, recipe.router.data, FISHER_EXAMPLES),
  frontier: {
    label: 'budget 0.055, int8 factors',
    change: { exclusive: { budget: 0.055, dtype: 'int8' } },
  },
  title: 'Fashion-MNIST zoo',
}

const TEXT: ZooKind<ReturnType<typeof loadTextSplits>> = {
  splits: (recipe, tasks) => {
    const zoo = readTextZoo(join(recipe.base, '..'))
    const tokenizer = zooTokenizer(zoo)
    return {
      val: loadTextSplits(zoo, tokenizer, tasks, 'val'),
      test: loadTextSplits(zoo, tokenizer, tasks, 'test'),
    }
  },
  score: evaluateText,
  // The text frontier's budget-0.075 int8 arm (bench:quality:text-frontier) applied to the current recipe: its
  // router's bag of tokens is the recipe's, so the bytes need not match that table's.
  frontier: {
    label: 'budget 0.075 int8, shared f16, router [64] + bag f16',
    change: {
      exclusive: { budget: 0.075, dtype: 'int8' },
      shared_dtype: 'float16',
      router: { hidden: [64], epochs: 40, patience: 8, dtype: 'float16' },
    },
  },
  title: 'text zoo',
}

export const REGMEAN_ZOOS = { fashion: FASHION, text: TEXT } as const

async function scorePlain<D>(
  kind: ZooKind<D>,
  model: Uint8Array | string,
  data: D,
): Promise<Accuracy> {
  const s = await openCpu(model)
  try {
    return await kind.score(s, data)
  } finally {
    await s.release()
  }
}

async function scoreTwin<D>(
  kind: ZooKind<D>,
  model: Uint8Array,
  T: number,
  data: D,
  modes: readonly RoutingMode[],
): Promise<Accuracy[]> {
  const s = await openCpu(model)
  try {
    const out: Accuracy[] = []
    for (const mode of modes) out.push(await kind.score(s, data, { experts: T, mode }))
    return out
  } finally {
    await s.release()
  }
}

async function regmeanStatic<D>(
  kind: ZooKind<D>,
  z: ZooModels,
  grams: Grams,
  data: { val: D; test: D },
  objective: (perTask: readonly number[]) => number,
): Promise<{
  grid: { alpha: number; mean: number }[]
  alpha: number
  test: Accuracy
  val: Accuracy
}> {
  const grid: { alpha: number; mean: number; val: Accuracy }[] = []
  for (const alpha of ALPHA_GRID) {
    const val = await scorePlain(
      kind,
      graphBytes(z, mergeValues(z, parseMergeSpec({ method: 'regmean', alpha }), grams)),
      data.val,
    )
    grid.push({ alpha, mean: objective(val.perTask), val })
  }
  const best = grid.reduce((a, b) => (b.mean > a.mean ? b : a))
  const test = await scorePlain(
    kind,
    graphBytes(z, mergeValues(z, parseMergeSpec({ method: 'regmean', alpha: best.alpha }), grams)),
    data.test,
  )
  return {
    grid: grid.map(({ alpha, mean }) => ({ alpha, mean })),
    alpha: best.alpha,
    test,
    val: best.val,
  }
}

interface TwinRow {
  config: string
  shared: string
  valNormalised: number
  testNormalised: number
  oracleNormalised: number
  sharedNormalised: number
  routerAccuracy: number
  packageBytes: number
}

export async function runRegMeanQuality<D>(opts: {
  kind: ZooKind<D>
  recipe: string
  log: (line: string) => void
}): Promise<string> {
  const { kind } = opts
  const started = performance.now()
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`
  const recipe = await readRecipe(opts.recipe)
  const tasks = recipe.experts.map((e) => e.name)
  const T = tasks.length
  const z = await readZooModels(
    recipe.base,
    recipe.experts.map((e) => ({ name: e.name, path: e.model })),
  )
  const data = kind.splits(recipe, tasks)
  const expert = { val: [] as number[], test: [] as number[] }
  for (const [t, path] of z.expertPaths.entries()) {
    const s = await openCpu(path)
    try {
      expert.val.push((await kind.score(s, data.val)).perTask[t] as number)
      expert.test.push((await kind.score(s, data.test)).perTask[t] as number)
    } finally {
      await s.release()
    }
  }
  const norm = (a: Accuracy, split: 'val' | 'test') => mean(normalised(a.perTask, expert[split]))
  opts.log(`regmean: experts scored (${elapsed()})`)

  // The Grams of the recipe as written (absolute paths), exactly as a build of it computes them.
  const dir = await mkdtemp(join(tmpdir(), 'twinserve-regmean-bench-'))
  const builder = await ArmBuilder.open()
  try {
    const recipePath = join(dir, 'recipe.yaml')
    await writeFile(recipePath, YAML.stringify(recipe))
    const t0 = performance.now()
    const grams = await recipeGrams(recipePath)
    const gramSeconds = (performance.now() - t0) / 1000
    opts.log(`regmean: Grams of ${grams.size} weights (${elapsed()})`)

    // 1. Static merges: lambda (alpha) picked on validation.
    const statics: { label: string; param: string; val: number; test: number; testMean: number }[] =
      []
    const fromStatic = (label: string, r: StaticResult) => {
      const best = r.validation.find((v) => v.lambda === r.lambda)
      statics.push({
        label,
        param: r.lambda === undefined ? '-' : `λ=${r.lambda}`,
        val: best?.mean ?? 0,
        test: norm(r.test, 'test'),
        testMean: mean(r.test.perTask),
      })
      return r
    }
    const methods: { label: string; spec: MergeSpecInput; fixed?: boolean }[] = [
      { label: 'linear (average)', spec: { method: 'linear' }, fixed: true },
      { label: 'task_arithmetic', spec: { method: 'task_arithmetic' } },
      { label: 'ties (density 0.2)', spec: { method: 'ties', density: 0.2 } },
    ]
    const picked: Record<string, number | undefined> = {}
    for (const m of methods) {
      const r = fromStatic(
        m.label,
        await runStaticMerge(z, m, data, kind.score, (perTask) =>
          mean(normalised(perTask, expert.val)),
        ),
      )
      picked[m.spec.method] = r.lambda
      opts.log(`regmean: static ${m.label} (${elapsed()})`)
    }
    const rm0 = await regmeanStatic(kind, z, grams, data, (perTask) =>
      mean(normalised(perTask, expert.val)),
    )
    statics.push({
      label: 'regmean',
      param: `α=${rm0.alpha}`,
      val: norm(rm0.val, 'val'),
      test: norm(rm0.test, 'test'),
      testMean: mean(rm0.test.perTask),
    })
    opts.log(`regmean: static regmean, α=${rm0.alpha} (${elapsed()})`)
    if (kind.fisher) {
      const fisher = await kind.fisher(z, recipe)
      const merged = new Map<string, Float32Array>()
      for (const name of z.baseValues.keys())
        merged.set(
          name,
          fisherMerge(
            z.experts.map((e) => e.get(name) as Float32Array),
            fisher.map((f) => f.get(name) as Float32Array),
          ),
        )
      const bytes = graphBytes(z, merged)
      const val = await scorePlain(kind, bytes, data.val)
      const test = await scorePlain(kind, bytes, data.test)
      statics.push({
        label: `fisher (diagonal, ${FISHER_EXAMPLES} examples per expert, y ~ p)`,
        param: '-',
        val: norm(val, 'val'),
        test: norm(test, 'test'),
        testMean: mean(test.perTask),
      })
      opts.log(`regmean: static fisher (${elapsed()})`)
    }

    // 2. The twin package's shared model: only `shared` changes.
    const sharedSpecs: { label: string; spec: RecipeInput['shared'] }[] = [
      {
        label: 'task_arithmetic λ=0.3 (the recipe’s)',
        spec: { method: 'task_arithmetic', lambda: 0.3 },
      },
      {
        label: `ties density 0.2, λ=${picked.ties ?? 1} (static pick)`,
        spec: { method: 'ties', density: 0.2, lambda: picked.ties ?? 1 },
      },
      {
        label: `regmean α=${rm0.alpha} (static pick)`,
        spec: { method: 'regmean', alpha: rm0.alpha },
      },
    ]
    const configs: { label: string; change: RecipeChange; shared: typeof sharedSpecs }[] = [
      { label: 'the recipe’s exclusive knowledge and router', change: {}, shared: sharedSpecs },
      {
        ...kind.frontier,
        shared: [sharedSpecs[0], sharedSpecs[2]].filter((s) => s !== undefined),
      },
    ]
    const twins: TwinRow[] = []
    for (const c of configs)
      for (const s of c.shared) {
        const b = await builder.build(
          applyChange(recipe, { variants: [], shared_file: false, ...c.change, shared: s.spec }),
        )
        const [val] = await scoreTwin(kind, b.model, T, data.val, [{ kind: 'router' }])
        const [test, oracle, zero] = await scoreTwin(kind, b.model, T, data.test, [
          { kind: 'router' },
          { kind: 'oracle' },
          { kind: 'zero' },
        ])
        twins.push({
          config: c.label,
          shared: s.label,
          valNormalised: norm(val as Accuracy, 'val'),
          testNormalised: norm(test as Accuracy, 'test'),
          oracleNormalised: norm(oracle as Accuracy, 'test'),
          sharedNormalised: norm(zero as Accuracy, 'test'),
          routerAccuracy: mean(test?.routing ?? []),
          packageBytes: b.report.sizes.packageBytes,
        })
        opts.log(`regmean: twin ${c.label}, shared ${s.label} (${elapsed()})`)
      }

    const out: string[] = []
    out.push(`## RegMean vs the data-free merges (${kind.title}, issue #18)`)
    out.push('')
    // Bullets, as the other sections: the command line is inserted as the first one (run.ts writeZooSection).
    out.push(
      `- **Method:** RegMean (\`shared: { method: regmean, alpha }\`) solves each linear weight from the Gram matrices of its inputs on every expert's routing examples (train split; ${grams.size} weights, computed in ${gramSeconds.toFixed(1)} s by \`recipeGrams\`, as \`twinserve build\` does); biases are averaged.${kind.fisher ? ` Fisher merging (Matena & Raffel 2022, \`fisherMerge\`, floor 1e-6) weighs each parameter by each expert's diagonal Fisher, computed by the benchmark on this MLP only (\`bench/quality/fisher-mlp.ts\`: ${FISHER_EXAMPLES} routing examples per expert, y sampled from the expert's p(y|x), squared gradients of −log p_y from the trainer's gradient graph); the builder has no gradients, so it is not a recipe method.` : ''}`,
    )
    out.push(
      `- **Static rows:** one plain graph per method, its λ (the main report's grid; α for RegMean, grid ${ALPHA_GRID.join(', ')}) picked by normalised accuracy on the **validation** split, scored on **test**; normalised = merged / expert × 100 per task, averaged.`,
    )
    out.push(
      `- **Twin rows:** \`twinserve build\` of \`${opts.recipe}\` with only \`shared\` changed (no static variants, no shared file), the trained router dense; "oracle" feeds the true task one-hot, "shared alone" all-zero weights.`,
    )
    out.push('')
    out.push(
      markdownTable(
        [
          'static merge',
          'picked on validation',
          'validation normalised',
          'test normalised',
          'test mean acc.',
        ],
        statics.map((r) => [r.label, r.param, pct(r.val), `**${pct(r.test)}**`, pct(r.testMean)]),
      ),
    )
    out.push('')
    out.push(
      `RegMean's validation grid (normalised, %): ${rm0.grid.map((g) => `α=${g.alpha}: ${pct(g.mean)}`).join(', ')}.`,
    )
    out.push('')
    out.push(
      markdownTable(
        [
          'twin configuration',
          'shared merge',
          'validation normalised',
          'test normalised',
          'oracle (test)',
          'shared alone (test)',
          'router acc.',
          'package MB',
          'vs experts',
        ],
        twins.map((r) => [
          r.config,
          r.shared,
          pct(r.valNormalised),
          `**${pct(r.testNormalised)}**`,
          pct(r.oracleNormalised),
          pct(r.sharedNormalised),
          pct(r.routerAccuracy),
          mb(r.packageBytes),
          `${pct(r.packageBytes / z.expertBytes)}%`,
        ]),
      ),
    )
    out.push('')
    return out.join('\n')
  } finally {
    await builder.close()
    await rm(dir, { recursive: true, force: true })
  }
}
