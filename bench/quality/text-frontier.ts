/**
 * The text zoo's quality–cost frontier (issue #18), `npm run bench:quality -- --only text-frontier`: recipe
 * variants of zoo/text/recipe.yaml (written here, never committed as recipes), each built by `twinserve build`
 * and measured for
 * - the ORACLE normalised accuracy (the true task one-hot: what the factors lose, nothing else),
 * - the ROUTED normalised accuracy (the embedded router's dense mix, as served: factors and routing together),
 * on the validation splits (every choice) and the test splits (reported only), and the package's stored bytes
 * against the six experts' files. The arms separate the three places the bytes go: the shared model (recipe
 * `shared_dtype`), the factors (`exclusive.budget` × `exclusive.dtype`) and the router (its width, the bag of
 * tokens, `router.dtype`). Pareto (✓): no other arm has both higher validation routed accuracy and fewer bytes.
 *
 * Each arm's numbers are cached under `bench/.cache/text-frontier/` by a hash of the recipe it built (its paths
 * relative to the working directory, so a cache copied between checkouts still hits) and of the zoo's model files,
 * so a rerun after a change rebuilds only the arms that changed (`--fresh` ignores the cache; `--text-arms <s>`
 * builds only the arms whose label contains s and reads the others from the cache, leaving out any not there).
 *
 * Two routers: the arms first measured (2026-12-05, before route2-13) keep the router the recipe had then
 * (`ROUTER_ROUTE1`: mean bag, MLP), pinned so their rows stay what was measured; the "package router" arms use
 * the committed recipe's router as it is (they follow it when it changes).
 * @module
 */
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { markdownTable } from '@twinserve/gpu-runner/build'
import { onnx } from '@twinserve/gpu-runner/onnx'
import { type RecipeInput, TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import { readTextZoo } from '@twinserve/zoo/text'
import { mean, openCpu, type RoutingMode } from './evaluate.ts'
import { mb, normalised, pct } from './report.ts'
import { evaluateText, loadTextSplits, type TextTaskData, zooTokenizer } from './text-evaluate.ts'
import { ArmBuilder, applyChange, type RecipeChange, readRecipe } from './twin-arms.ts'
import { readZooModels } from './zoo-models.ts'

export interface TextFrontierArm {
  label: string
  /** What the arm measures: the factors' loss (oracle sweep) or a servable configuration (routed). */
  group: 'factors' | 'routed'
  change: RecipeChange
  /** The router the change applies to: the one the first arms were measured with, or the committed recipe's. */
  router: 'route1' | 'package'
}

/**
 * zoo/text/recipe.yaml's router when the frontier was first measured (route1: masked embeddings + block 0's FFN,
 * mean bag of tokens standardised per id, MLP [256], no sharpness), `data` aside (the recipe's own). In the
 * recipe's key order, so the cached arms' keys are what they were.
 */
export const ROUTER_ROUTE1: RecipeInput['router'] = {
  feature: ['/Add_output_0', '/blocks.0/Mul_1_output_0'],
  pooling: 'masked',
  bag_of_tokens: true,
  data: '',
  hidden: [256],
  epochs: 80,
  lr: 0.002,
  batch_size: 64,
  patience: 12,
  seed: 1,
  heldout_fraction: 0.1,
}

/**
 * The recipe the route1 arms were measured on: the committed one with ROUTER_ROUTE1, float32 shared weights (the
 * recipe had no `shared_dtype` then; arms that want float16 say so) and a `variants` key after the router (every
 * arm sets it to none), in that key order, so their cached keys and rows stay what was measured.
 */
export function route1Recipe(recipe: RecipeInput): RecipeInput {
  const { shared_dtype: _, variants: _v, router, verify, ...rest } = recipe
  return {
    ...rest,
    router: { ...ROUTER_ROUTE1, data: router.data },
    variants: [],
    ...(verify ? { verify } : {}),
  } as RecipeInput
}

/** A small router for the budget arms: the committed features and bag, hidden 64, 40 epochs. */
const SMALL_BAG = { hidden: [64], epochs: 40, patience: 8 }
/** No bag of tokens: the router reads the masked embeddings + block 0's FFN only (320 features). */
const NO_BAG = { hidden: [64], epochs: 40, patience: 8, bag_of_tokens: false }
/**
 * The data-free router reads one tensor, mean-pooled, that an exclusive matrix multiplies: block 0's FFN
 * activation, the input of its second FFN matrix.
 */
const DATA_FREE = {
  kind: 'data-free',
  feature: '/blocks.0/Mul_1_output_0',
  pooling: 'mean',
  bag_of_tokens: false,
} as const

/** The package router's compressed arms: factor budgets at int8 with the shared model and router as float16. */
export const PACKAGE_ROUTER_BUDGETS = [0.05, 0.08, 0.12] as const
const packageArm = (budget: number) => `budget ${budget} int8, shared f16, package router f16`

/** The trained-router arm with the data-free arm's shared model and factors: the data-free router's yardstick. */
export const TRAINED_BESIDE_DATA_FREE = packageArm(0.05)

/** The arms, from the committed recipe: no static variants, no shared file (package = twin graph + tokenizer + manifest). */
export function textFrontierArms(budgets: readonly number[]): TextFrontierArm[] {
  const arms: Omit<TextFrontierArm, 'router'>[] = []
  // 1. The factors alone: budgets × float16 / int8, a prototype router (cheap; its routed row shows it).
  for (const dtype of ['float16', 'int8'] as const)
    for (const budget of budgets)
      arms.push({
        label: `budget ${budget} ${dtype}, prototype router`,
        group: 'factors',
        change: {
          exclusive: { budget, dtype },
          router: { kind: 'prototype', bag_of_tokens: false },
        },
      })
  // 2. Servable configurations: where the bytes go besides the factors.
  const int8 = (budget: number) => ({ budget, dtype: 'int8' as const })
  arms.push(
    {
      label: 'budget 0.05 int8, route1 router (mean bag, [256])',
      group: 'routed',
      change: { exclusive: int8(0.05) },
    },
    {
      label: 'budget 0.05 int8, shared f16, route1 router [64] no bag',
      group: 'routed',
      change: { exclusive: int8(0.05), shared_dtype: 'float16', router: NO_BAG },
    },
    {
      label: 'budget 0.05 int8, shared f16, route1 router [64] + mean bag f16',
      group: 'routed',
      change: {
        exclusive: int8(0.05),
        shared_dtype: 'float16',
        router: { ...SMALL_BAG, dtype: 'float16' },
      },
    },
    {
      label: 'budget 0.075 int8, shared f16, route1 router [64] + mean bag f16',
      group: 'routed',
      change: {
        exclusive: int8(0.075),
        shared_dtype: 'float16',
        router: { ...SMALL_BAG, dtype: 'float16' },
      },
    },
    {
      // A wider router pays in bag rows (5,000 × 128 float16 = 1.28 MB): fewer factor bytes to stay within 25%.
      label: 'budget 0.03 int8, shared f16, route1 router [128] + mean bag f16',
      group: 'routed',
      change: {
        exclusive: int8(0.03),
        shared_dtype: 'float16',
        router: { hidden: [128], dtype: 'float16' },
      },
    },
    {
      label: 'budget 0.05 int8, shared f16, data-free router',
      group: 'routed',
      change: { exclusive: int8(0.05), shared_dtype: 'float16', router: DATA_FREE },
    },
    {
      // The head's input: the mask-pooled final hidden state, where the tasks' classifiers differ most.
      label: 'budget 0.05 int8, shared f16, data-free router on the head input',
      group: 'routed',
      change: {
        exclusive: int8(0.05),
        shared_dtype: 'float16',
        router: { ...DATA_FREE, feature: '/Div_output_0' },
      },
    },
  )
  const out: TextFrontierArm[] = arms.map((a) => ({ ...a, router: 'route1' }))
  // 3. The committed recipe's router (the package's), stored as float16, at int8 factor budgets.
  for (const budget of PACKAGE_ROUTER_BUDGETS)
    out.push({
      label: packageArm(budget),
      group: 'routed',
      router: 'package',
      change: {
        exclusive: int8(budget),
        shared_dtype: 'float16',
        router: { dtype: 'float16' },
      },
    })
  return out
}

export interface TextFrontierRow {
  label: string
  group: TextFrontierArm['group']
  oracleVal: number
  oracleTest: number
  routedVal: number
  routedTest: number
  /** Router accuracy on test (argmax of the applied weights = the true task). */
  routerTest: number
  packageBytes: number
  /** Bytes of model.onnx. */
  modelBytes: number
  totalRank: number
  /** Seconds its build and measurement took when it was made (the machine's load included). */
  seconds: number
  /** Built in this run (else read from the cache). */
  built: boolean
  /** model.onnx's initializer bytes by what they are. */
  bytesOf: { shared: number; factors: number; router: number }
  pareto?: boolean
}

/** model.onnx's initializer bytes: the factors (`<w>.twin_*`), the router (`twin/router/…`), the rest (the shared model). */
export function bytesOfParts(model: Uint8Array): TextFrontierRow['bytesOf'] {
  const out = { shared: 0, factors: 0, router: 0 }
  const suffixes = Object.values(TWIN_FACTOR_SUFFIXES)
  for (const t of onnx.ModelProto.decode(model).graph?.initializer ?? []) {
    const name = t.name ?? ''
    const bytes =
      (t.rawData?.byteLength ?? 0) +
      4 * ((t.floatData?.length ?? 0) + (t.int32Data?.length ?? 0)) +
      8 * (t.int64Data?.length ?? 0)
    if (name.startsWith('twin/router/')) out.router += bytes
    else if (suffixes.some((x) => name.endsWith(x))) out.factors += bytes
    else out.shared += bytes
  }
  return out
}

/** A recipe's router in a few words, for the report. */
export function describeRouter(recipe: RecipeInput): string {
  const r = recipe.router
  const features = [r.feature ?? 'the default feature'].flat().map((f) => `\`${f}\``)
  const hidden = [r.hidden ?? [64]].flat()
  return [
    `${r.pooling === 'masked' ? 'masked ' : ''}${features.join(' + ')}`,
    r.bag_of_tokens ? `${r.bag_weighting ?? 'mean'} bag of tokens` : '',
    hidden.length === 0 ? 'linear' : `MLP [${hidden.join(', ')}]`,
    (r.ensemble ?? 1) > 1 ? `mean of ${r.ensemble} seeds` : '',
    (r.sharpness ?? 1) !== 1 ? `logits × ${r.sharpness}` : '',
  ]
    .filter(Boolean)
    .join(', ')
}

/** The recipe as JSON with this checkout's absolute paths made relative (the cache key outlives the folder). */
export function portableJson(r: RecipeInput, root = resolve('.')): string {
  return JSON.stringify(r).replaceAll(`${root}/`, '')
}

function sha(...parts: (string | Uint8Array)[]): string {
  const h = createHash('sha256')
  for (const p of parts) h.update(p)
  return h.digest('hex').slice(0, 16)
}

async function measure(
  model: Uint8Array,
  T: number,
  data: { val: readonly TextTaskData[]; test: readonly TextTaskData[] },
  expert: { val: readonly number[]; test: readonly number[] },
) {
  const s = await openCpu(model)
  try {
    const run = (split: readonly TextTaskData[], mode: RoutingMode) =>
      evaluateText(s, split, { experts: T, mode })
    const oVal = await run(data.val, { kind: 'oracle' })
    const oTest = await run(data.test, { kind: 'oracle' })
    const rVal = await run(data.val, { kind: 'router' })
    const rTest = await run(data.test, { kind: 'router' })
    return {
      oracleVal: mean(normalised(oVal.perTask, expert.val)),
      oracleTest: mean(normalised(oTest.perTask, expert.test)),
      routedVal: mean(normalised(rVal.perTask, expert.val)),
      routedTest: mean(normalised(rTest.perTask, expert.test)),
      routerTest: mean(rTest.routing ?? []),
    }
  } finally {
    await s.release()
  }
}

export interface TextFrontierOptions {
  recipe: string
  budgets: readonly number[]
  cacheDir: string
  fresh: boolean
  /** Build only the arms whose label contains this; read the others from the cache (left out if not there). */
  only?: string
  log: (line: string) => void
}

/** Builds and measures every arm (cached), marks the Pareto points; returns the rows and the experts' bytes. */
export async function runTextFrontier(o: TextFrontierOptions): Promise<{
  rows: TextFrontierRow[]
  expertBytes: number
  expert: { val: number[]; test: number[] }
  /** The committed recipe's router in words (what the "package router" arms use). */
  packageRouter: string
}> {
  const started = performance.now()
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`
  const recipe = await readRecipe(resolve(o.recipe))
  const tasks = recipe.experts.map((e) => e.name)
  const T = tasks.length
  const zoo = readTextZoo(resolve(recipe.base, '..'))
  const tokenizer = zooTokenizer(zoo)
  const data = {
    val: loadTextSplits(zoo, tokenizer, tasks, 'val'),
    test: loadTextSplits(zoo, tokenizer, tasks, 'test'),
  }
  const models = await readZooModels(
    recipe.base,
    recipe.experts.map((e) => ({ name: e.name, path: e.model })),
  )
  // The cache key's zoo half: the base, the experts and the routing data, as bytes.
  const zooKey = sha(
    readFileSync(recipe.base),
    ...recipe.experts.map((e) => readFileSync(e.model)),
    readFileSync(recipe.router.data),
  )
  mkdirSync(o.cacheDir, { recursive: true })
  const cached = <X>(key: string, make: () => Promise<X>): Promise<X> => {
    const file = join(o.cacheDir, `${key}.json`)
    if (!o.fresh && existsSync(file)) return Promise.resolve(JSON.parse(readFileSync(file, 'utf8')))
    return make().then((x) => {
      writeFileSync(file, `${JSON.stringify(x)}\n`)
      return x
    })
  }
  // The experts on their own tasks, measured as the twin arms are (onnxruntime, the served tokenization).
  const expert = await cached(`experts-${zooKey}`, async () => {
    const val: number[] = []
    const test: number[] = []
    for (const [t, path] of models.expertPaths.entries()) {
      for (const [split, out] of [
        [data.val, val],
        [data.test, test],
      ] as const) {
        const s = await openCpu(path)
        try {
          out.push((await evaluateText(s, split)).perTask[t] as number)
        } finally {
          await s.release()
        }
      }
    }
    return { val, test }
  })
  o.log(`text frontier: experts (${elapsed()})`)
  const builder = await ArmBuilder.open()
  const rows: TextFrontierRow[] = []
  const route1 = route1Recipe(recipe)
  try {
    for (const arm of textFrontierArms(o.budgets)) {
      const r: RecipeInput = applyChange(arm.router === 'route1' ? route1 : recipe, {
        variants: [],
        shared_file: false,
        ...arm.change,
      })
      const key = `arm-${sha(zooKey, portableJson(r))}`
      if (
        o.only !== undefined &&
        !arm.label.includes(o.only) &&
        !existsSync(join(o.cacheDir, `${key}.json`))
      ) {
        o.log(`text frontier: ${arm.label}: not cached, left out (--text-arms ${o.only})`)
        continue
      }
      let built = false
      const row = await cached(key, async () => {
        built = true
        const t0 = performance.now()
        const b = await builder.build(r)
        const measured = await measure(b.model, T, data, expert)
        return {
          label: arm.label,
          group: arm.group,
          ...measured,
          packageBytes: b.report.sizes.packageBytes,
          modelBytes: b.report.sizes.files['model.onnx'] ?? 0,
          bytesOf: bytesOfParts(b.model),
          totalRank: b.report.exclusive.reduce(
            (a, x) => a + (x.ranks ?? []).reduce((p, q) => p + q, 0),
            0,
          ),
          seconds: (performance.now() - t0) / 1000,
        }
      })
      rows.push({ ...row, label: arm.label, group: arm.group, built })
      o.log(`text frontier: ${arm.label} (${elapsed()})`)
    }
  } finally {
    await builder.close()
  }
  for (const row of rows)
    row.pareto = !rows.some(
      (x) =>
        x !== row &&
        x.routedVal >= row.routedVal &&
        x.packageBytes <= row.packageBytes &&
        (x.routedVal > row.routedVal || x.packageBytes < row.packageBytes),
    )
  return { rows, expertBytes: models.expertBytes, expert, packageRouter: describeRouter(recipe) }
}

export function textFrontierTable(rows: readonly TextFrontierRow[], expertBytes: number): string {
  return markdownTable(
    [
      'configuration',
      'oracle val',
      'oracle test',
      'routed val',
      'routed test',
      'router acc. (test)',
      'Σ rank',
      'package MB',
      'vs experts',
      'Pareto',
    ],
    rows.map((r) => [
      r.pareto ? `**${r.label}**` : r.label,
      pct(r.oracleVal),
      pct(r.oracleTest),
      pct(r.routedVal),
      pct(r.routedTest),
      pct(r.routerTest),
      String(r.totalRank),
      mb(r.packageBytes),
      `${pct(r.packageBytes / expertBytes, 1)}%`,
      r.pareto ? '✓' : '',
    ]),
  )
}
