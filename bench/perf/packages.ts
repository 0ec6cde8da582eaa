/**
 * The benchmark's twin packages: the bundled demo package, and BERT-base-shaped packages built by the real
 * builder (`twinserve build`, in a child process) from the generated encoder in bert-encoder.ts.
 *
 * Everything generated lives under the git-ignored bench/.cache/perf/: the encoder's inputs (base, 8 experts,
 * routing data; ~3.3 GB, regenerated when BERT_VERSION changes) and the packages, each rebuilt when its recipe or
 * the twin-graph source changes (a hash of both is kept beside it; GRAPH_SOURCES).
 * @module
 */
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { link, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import YAML from 'yaml'
import {
  BERT,
  BERT_EXPERTS,
  BERT_VERSION,
  baseParams,
  bertModel,
  expertName,
  expertParams,
  writeAtomic,
  writeBertInputs,
  writeRouting,
} from './bert-encoder.ts'

export const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)))
export const CACHE = join(REPO, 'bench/.cache/perf')
export const DEMO_RECIPE = join(REPO, 'zoo/fashion/recipe.yaml')

export interface BertPackageSpec {
  name: string
  /** What the table calls it. */
  label: string
  exclusive: Record<string, unknown>
  router?: Record<string, unknown>
  /** Number of experts T (default BERT_EXPERTS); more come from the scale inputs (ensureScaleInputs). */
  experts?: number
}

/** The Twin-Merging router's default feature (the shared model's last hidden features) and an early one. */
export const EARLY_FEATURE = 'embeddings.output'

export const BERT_PACKAGES = {
  r16: { name: 'bert-r16', label: 'r16 dense', exclusive: { rank: 16 } },
  r16early: {
    name: 'bert-r16-early',
    label: 'r16 dense, router on embeddings',
    exclusive: { rank: 16 },
    router: { feature: EARLY_FEATURE },
  },
  r64: { name: 'bert-r64', label: 'r64 dense', exclusive: { rank: 64 } },
  r64top2: {
    name: 'bert-r64-top2',
    label: 'r64 top-2 gather',
    exclusive: { rank: 64, topk_gather: 2 },
  },
  /** Issue #18: r16 dense's stored rank budget (16 × 8), 32 ranks computed per row; routed from an early tensor. */
  r16top2: {
    name: 'bert-r16-top2',
    label: 'r16 top-2 gather',
    exclusive: { rank: 16, topk_gather: 2 },
    router: { feature: EARLY_FEATURE },
  },
  r16top2t32: {
    name: 'bert-r16-top2-t32',
    label: 'r16 top-2 gather, 32 experts',
    exclusive: { rank: 16, topk_gather: 2 },
    router: { feature: EARLY_FEATURE },
    experts: 32,
  },
  r16top2t64: {
    name: 'bert-r16-top2-t64',
    label: 'r16 top-2 gather, 64 experts',
    exclusive: { rank: 16, topk_gather: 2 },
    router: { feature: EARLY_FEATURE },
    experts: 64,
  },
} as const satisfies Record<string, BertPackageSpec>

const inputsDir = () => join(CACHE, `bert-v${BERT_VERSION}`)

/** Generates the encoder's build inputs once (a stamp file marks a complete set). */
export async function ensureBertInputs(log: (s: string) => void): Promise<string> {
  const dir = inputsDir()
  const stamp = join(dir, 'complete.json')
  if (existsSync(stamp)) return dir
  const started = performance.now()
  log(
    `generating the BERT-base-shaped encoder and ${BERT_EXPERTS} experts in ${relative(REPO, dir)}`,
  )
  await rm(dir, { recursive: true, force: true })
  await writeBertInputs(dir, { log: (f) => log(`  wrote ${f}`) })
  await writeFile(
    stamp,
    `${JSON.stringify({ version: BERT_VERSION, shape: BERT, seconds: (performance.now() - started) / 1000 })}\n`,
  )
  return dir
}

/**
 * The build inputs for T experts beyond the default 8 (issue #18's scaling runs), in a folder of their own:
 * base.onnx and the first 8 experts hard-linked from the default inputs (the generator is deterministic, so they
 * are the same models; every file here and there is only ever replaced by a rename or removed, never rewritten in
 * place), the other experts generated (~370 MB each), and routing data for T experts (`routing-t<T>.jsonl`: each
 * expert's own band of the vocabulary is 1/T of it; ~160 examples in all). Each file is written atomically, so one that exists is whole.
 */
export async function ensureScaleInputs(
  T: number,
  log: (s: string) => void,
): Promise<{ dir: string; routing: string }> {
  const from = await ensureBertInputs(log)
  const dir = join(CACHE, `bert-v${BERT_VERSION}-scale`)
  await mkdir(join(dir, 'experts'), { recursive: true })
  const linked = async (file: string) => {
    if (!existsSync(join(dir, file))) await link(join(from, file), join(dir, file))
  }
  await linked('base.onnx')
  let base: Map<string, Float32Array> | undefined
  for (let t = 0; t < T; t++) {
    const file = join('experts', `${expertName(t)}.onnx`)
    if (existsSync(join(dir, file))) continue
    if (t < BERT_EXPERTS) {
      await linked(file)
      continue
    }
    base ??= baseParams()
    await writeAtomic(join(dir, file), bertModel(expertParams(base, t)))
    log(`  wrote ${relative(REPO, join(dir, file))}`)
  }
  // About 160 routing examples whatever T (20 per expert at T = 8): the router's feature pass and training are a
  // cost of every build, and the frontier measures serving, not routing accuracy (random weights).
  const routing = join(dir, `routing-t${T}.jsonl`)
  if (!existsSync(routing)) await writeRouting(routing, T, Math.max(3, Math.round(160 / T)))
  return { dir, routing }
}

export function recipeFor(
  spec: BertPackageSpec,
  dir: string,
  routing = join(dir, 'routing.jsonl'),
) {
  return {
    name: spec.name,
    description: `BERT-base-shaped benchmark package (${spec.label})`,
    base: join(dir, 'base.onnx'),
    experts: Array.from({ length: spec.experts ?? BERT_EXPERTS }, (_, t) => ({
      name: expertName(t),
      model: join(dir, 'experts', `${expertName(t)}.onnx`),
    })),
    exclusive: spec.exclusive,
    router: { data: routing, hidden: [64], epochs: 30, seed: 1, ...spec.router },
    verify: { examples_per_expert: 1 },
  }
}

/**
 * The source files that decide the served graph (the twin rewrite and its parts): a change there rebuilds the
 * cached packages. Other builder changes (verification, progress, the merge engine's numerics) do not change what
 * serving costs, and rebuilding four 0.8–1.2 GB packages for them would blow the time budget; the r16 package is
 * rebuilt on every full run anyway (it is the builder benchmark).
 */
const GRAPH_SOURCES = [
  'gpu-runner/src/build/router/router-gate.ts',
  'gpu-runner/src/build/router/router-graph.ts',
  'gpu-runner/src/build/graph/graph-editor.ts',
  'gpu-runner/src/build/graph/ops.ts',
  // Where the batch is in each tensor decides how per-row weights are broadcast.
  'gpu-runner/src/build/graph/row-layout.ts',
  'gpu-runner/src/build/graph/batch-axes.ts',
  'gpu-runner/src/build/graph/node-infos.ts',
  'gpu-runner/src/build/graph/tensor-atoms.ts',
  // How a graph is laid out in its file (inline or external data).
  'gpu-runner/src/build/pipeline/write-model.ts',
  // The twin-graph contract: the control inputs the rewrite declares.
  'shared/src/schemas/twin-package.ts',
]
/** Every step of the rewrite (one file each). */
const GRAPH_SOURCE_DIR = 'gpu-runner/src/build/twin-graph'

async function graphSourceHash(): Promise<string> {
  const steps = (await readdir(join(REPO, GRAPH_SOURCE_DIR)))
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .sort()
    .map((f) => `${GRAPH_SOURCE_DIR}/${f}`)
  const h = createHash('sha256')
  // A missing file is an error: a stale list would silently stop rebuilding changed packages.
  for (const f of [...GRAPH_SOURCES, ...steps]) h.update(f).update(await readFile(join(REPO, f)))
  return h.digest('hex')
}

export interface BuildStats {
  package: string
  seconds: number
  /** User + system CPU seconds of the build process (absent in stats from before it was measured). */
  cpuSeconds?: number
  maxRssMb: number
  /** The builder's own step timings. */
  steps: { label: string; seconds: number }[]
  packageBytes: number
  expertsBytes: number
  heldoutAccuracy: number
  builtAt: string
}

/**
 * Runs `twinserve build` in a child process; peak RSS and CPU time from its getrusage.
 * @param builder another builder's entry module (baseline.ts), default this checkout's
 */
export async function runBuild(
  recipePath: string,
  out: string,
  name: string,
  builder?: string,
): Promise<BuildStats> {
  const statsPath = join(CACHE, `${name}.stats.json`)
  const reportPath = join(CACHE, `${name}.report.json`)
  const logPath = join(CACHE, `${name}.build.log`)
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO, 'bench/perf/build-child.ts'),
      'build',
      recipePath,
      '--out',
      out,
      '--force',
      '--quiet',
      '--json',
      reportPath,
    ],
    {
      cwd: REPO,
      env: {
        ...process.env,
        TWINSERVE_BENCH_STATS: statsPath,
        ...(builder ? { TWINSERVE_BENCH_BUILDER: builder } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString()
  })
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString()
  })
  const code = await new Promise<number | null>((res) => child.once('exit', res))
  await writeFile(logPath, output)
  if (code !== 0)
    throw new Error(
      `twinserve build ${name} failed (exit ${code}); log: ${relative(REPO, logPath)}\n${output.slice(-2000)}`,
    )
  const stats = JSON.parse(await readFile(statsPath, 'utf8')) as {
    seconds: number
    cpuSeconds: number
    maxRssMb: number
  }
  const report = JSON.parse(await readFile(reportPath, 'utf8')) as {
    timings: { label: string; seconds: number }[]
    sizes: { packageBytes: number; expertsBytes: number }
    router: { heldoutAccuracy: number }
  }
  return {
    package: name,
    seconds: stats.seconds,
    cpuSeconds: stats.cpuSeconds,
    maxRssMb: stats.maxRssMb,
    steps: report.timings,
    packageBytes: report.sizes.packageBytes,
    expertsBytes: report.sizes.expertsBytes,
    heldoutAccuracy: report.router.heldoutAccuracy,
    builtAt: new Date().toISOString(),
  }
}

/**
 * The bundled demo package, rebuilt from its own recipe (zoo/fashion/recipe.yaml) into the cache with the
 * `shared` variant file kept (`shared_file: true`) and no static variants: the committed package leaves that file
 * out to save space, and the benchmark needs the plain shared model as its baseline. The twin graph is the same
 * build of the same recipe. Needs the zoo's routing data (`npm run zoo` writes it).
 */
export async function ensureDemoPackage(opts: {
  log: (s: string) => void
}): Promise<{ dir: string; stats?: BuildStats; built: boolean }> {
  const recipe = YAML.parse(await readFile(DEMO_RECIPE, 'utf8')) as Record<string, unknown> & {
    base: string
    experts: { name: string; model: string }[]
    router: { data: string } & Record<string, unknown>
  }
  const at = (p: string) => resolve(dirname(DEMO_RECIPE), p)
  if (!existsSync(at(recipe.router.data)))
    throw new Error(
      `the demo package's routing data ${relative(REPO, at(recipe.router.data))} is missing: run npm run zoo first`,
    )
  const spec = {
    ...recipe,
    base: at(recipe.base),
    experts: recipe.experts.map((e) => ({ ...e, model: at(e.model) })),
    router: { ...recipe.router, data: at(recipe.router.data) },
    shared_file: true,
    variants: [],
  }
  return ensureBuilt('demo', spec, 'demo package (shared file kept)', opts)
}

/**
 * The package directory for `spec`, built when missing, stale (recipe or builder changed), or `force`d.
 * @returns the directory and the build's stats (the last build's, when reused)
 */
export async function ensureBertPackage(
  spec: BertPackageSpec,
  opts: { force?: boolean; reuseStale?: boolean; log: (s: string) => void },
): Promise<{ dir: string; stats?: BuildStats; built: boolean }> {
  const T = spec.experts ?? BERT_EXPERTS
  if (T === BERT_EXPERTS) {
    const inputs = await ensureBertInputs(opts.log)
    return ensureBuilt(spec.name, recipeFor(spec, inputs), spec.label, opts)
  }
  const { dir, routing } = await ensureScaleInputs(T, opts.log)
  return ensureBuilt(spec.name, recipeFor(spec, dir, routing), spec.label, opts)
}

/** The cache key of a package: its recipe (as written) and the twin-graph source. */
export async function packageKey(recipeText: string): Promise<string> {
  return createHash('sha256')
    .update(recipeText)
    .update(await graphSourceHash())
    .digest('hex')
}

async function ensureBuilt(
  name: string,
  recipe: unknown,
  label: string,
  opts: { force?: boolean; reuseStale?: boolean; log: (s: string) => void },
): Promise<{ dir: string; stats?: BuildStats; built: boolean }> {
  await mkdir(join(CACHE, 'recipes'), { recursive: true })
  await mkdir(join(CACHE, 'packages'), { recursive: true })
  const recipeText = YAML.stringify(recipe)
  const recipePath = join(CACHE, 'recipes', `${name}.yaml`)
  await writeFile(recipePath, recipeText)
  const key = await packageKey(recipeText)
  const dir = join(CACHE, 'packages', name)
  const keyPath = `${dir}.key`
  const statsPath = `${dir}.build.json`
  const have = existsSync(join(dir, 'manifest.json'))
  const fresh = have && (await readFile(keyPath, 'utf8').catch(() => '')) === key
  if (!opts.force && have && (fresh || opts.reuseStale)) {
    const stats = await readFile(statsPath, 'utf8').then(
      (t) => JSON.parse(t) as BuildStats,
      () => undefined,
    )
    return { dir, built: false, ...(stats ? { stats } : {}) }
  }
  opts.log(`building ${name} (${label}) with twinserve build`)
  const stats = await runBuild(recipePath, dir, name)
  await writeFile(statsPath, `${JSON.stringify(stats, null, 2)}\n`)
  await writeFile(keyPath, key)
  opts.log(
    `  ${name}: ${stats.seconds.toFixed(1)} s, peak RSS ${(stats.maxRssMb / 1024).toFixed(2)} GiB`,
  )
  return { dir, stats, built: true }
}
