/**
 * `twinserve build <recipe> --from <package> --add-expert name=model.onnx` (and `--remove-expert`,
 * `--replace-expert`): a new version of a built package (issue #19). The old package is read hash-verified; its
 * shared model and every kept expert's factors are reused unchanged (the shared model is not re-merged, so the
 * kept experts' knowledge stays relative to the same θ_s); only the experts given as model files are compressed
 * (pipeline/delta-knowledge.ts). The router is refitted on the recipe's routing data for the new expert list
 * (prototypes: class means, no training; MLP: retrained, seconds on the zoo), the package verified like any
 * build (every expert's one-hot output against its own model) and renamed into place only then.
 *
 * The recipe is the one the package was built from (its base graph, exclusive spec, router and routing data);
 * its expert list supplies the kept experts' model files, which verification compares against.
 * @module
 */

import { copyFile, mkdir, rm, stat } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { AppError, type Recipe } from '@twinserve/shared'
import { externalGraphPath, loadPackage } from '../package/load-package.ts'
import type { BuildOptions, BuildReport } from './build-package.ts'
import { checkOpset, opsetForms } from './graph/ops.ts'
import { analyseSites } from './graph/weight-sites.ts'
import { assertSameGraph } from './import/compare-graphs.ts'
import { modelInputs, modelOutputs } from './import/model-io.ts'
import { type OnnxModel, openOnnx, readOnnx, readOnnxBytes } from './import/read-onnx.ts'
import { loadRecipe } from './import/recipe-file.ts'
import type { BuildContext } from './pipeline/build-context.ts'
import { deltaKnowledge, type OldPackage } from './pipeline/delta-knowledge.ts'
import { selectExclusive } from './pipeline/exclusive-knowledge.ts'
import { type ExpertChange, type PlannedExpert, planExperts } from './pipeline/expert-changes.ts'
import { MODEL_FILE, packageManifest } from './pipeline/manifest.ts'
import { createReporter } from './pipeline/progress.ts'
import { readRecipeTokenizer, writeTokenizerFiles } from './pipeline/text-tokenizer.ts'
import { buildTwinModel } from './pipeline/twin-model.ts'
import { scratchFile, type VariantReport, variantFile } from './pipeline/variants.ts'
import { EXTERNAL_ABOVE, type WrittenFile } from './pipeline/write-model.ts'
import { createStaging, exists, finishPackage } from './pipeline/write-verified.ts'
import { tokenRouterInputs } from './router/router-inputs.ts'
import { readRoutingData, splitRouting } from './router/routing-data.ts'

export interface DeltaReport extends BuildReport {
  delta: {
    from: string
    /** Experts whose factors were copied from the old package unchanged. */
    reusedExperts: string[]
    /** Experts compressed from the model files given. */
    computedExperts: string[]
    removedExperts: string[]
    /** Float tensors of the shared model copied from the old package unchanged. */
    reusedSharedTensors: number
    /** Variant files copied unchanged; variants with exclusive knowledge are dropped (their router is per expert list). */
    copiedVariants: string[]
    droppedVariants: string[]
  }
}

function bad(message: string): AppError {
  return new AppError('INVALID_REQUEST', message)
}

async function openOld(dir: string): Promise<OldPackage> {
  const pkg = await loadPackage(dir)
  const rel = pkg.manifest.model.file
  const path = externalGraphPath(pkg, rel)
  const twin = path ? await readOnnx(path) : readOnnxBytes(pkg.model, join(dir, rel))
  return { dir, manifest: pkg.manifest, twin }
}

/** Refuses a recipe whose exclusive spec differs from the package's: the new expert must be compressed alike. */
function checkSameSpec(recipe: Recipe, old: OldPackage): void {
  const was = old.manifest.recipe as Partial<Recipe>
  if (JSON.stringify(was.exclusive) !== JSON.stringify(recipe.exclusive))
    throw bad(
      `the recipe's exclusive spec ${JSON.stringify(recipe.exclusive)} is not the one package ${old.dir} was built with (${JSON.stringify(was.exclusive)}); give the recipe the package was built from`,
    )
}

/** The routing data must be there: the new version's router is fitted on it. */
async function checkRoutingData(path: string, kind: string, recipePath: string): Promise<void> {
  const found = await stat(path).then(
    (s) => s.isFile(),
    () => false,
  )
  if (!found)
    throw bad(
      `routing data ${path} (router.data in ${recipePath}) is missing: the new version's ${kind} router is fitted on it for the new expert list; generate it (the Fashion zoo's: npm run zoo) or point router.data at it`,
    )
}

async function deltaContext(
  recipePath: string,
  old: OldPackage,
  planned: readonly PlannedExpert[],
  output: Pick<BuildContext, 'staging' | 'externalAbove' | 'reporter'>,
): Promise<{ ctx: BuildContext; models: Map<string, OnnxModel> }> {
  const step = output.reporter.step('reading recipe, package and new experts')
  const { recipe: given, files } = await loadRecipe(recipePath)
  checkSameSpec(given, old)
  // The old twin graph would be re-read as the shared model with its weights already FLOAT16 behind Casts; not
  // supported yet (issue #18's lever is new): a full build works.
  if (
    given.shared_dtype === 'float16' ||
    (old.manifest.recipe as Partial<Recipe>).shared_dtype === 'float16'
  )
    throw bad(
      `package ${old.dir} stores its shared weights as float16 (recipe shared_dtype): --from builds do not support that yet; run a full build`,
    )
  const base = await openOnnx(files.base)
  const opset = checkOpset(base.model, base.path)
  const models = new Map<string, OnnxModel>()
  const recipeDir = dirname(resolve(recipePath))
  const paths: string[] = []
  const experts: Recipe['experts'] = []
  for (const p of planned) {
    const labels = old.manifest.experts.find((e) => e.name === p.name)?.labels
    if (p.source === 'model') {
      const path = resolve(p.model)
      const m = await openOnnx(path)
      assertSameGraph(base, m, p.name)
      models.set(p.name, m)
      paths.push(path)
      experts.push({
        name: p.name,
        model: relative(recipeDir, path),
        ...(labels ? { labels } : {}),
      })
      continue
    }
    const i = given.experts.findIndex((e) => e.name === p.name)
    if (i < 0)
      throw bad(
        `expert '${p.name}' of package ${old.dir} is not in recipe ${recipePath}: its model file is needed to verify the new version's one-hot output for it`,
      )
    paths.push(files.experts[i] as string)
    experts.push({
      ...(given.experts[i] as Recipe['experts'][number]),
      ...(labels ? { labels } : {}),
    })
  }
  // The new version's router reads what the old one read.
  const was = old.manifest.router
  const features = was.features ?? [was.feature]
  const recipe: Recipe = {
    ...given,
    experts,
    router: {
      ...given.router,
      feature: features.length === 1 ? (features[0] as string) : features,
      pooling: was.pooling ?? 'mean',
      bag_of_tokens: was.bagOfTokens ?? false,
      bag_weighting: was.bagWeighting ?? 'mean',
      bag_bigrams: was.bagBigrams ?? 0,
      ...(was.bagBigramsChecked ? { bag_bigrams_checked: true } : {}),
    },
    // Variants with exclusive knowledge carry a router over the old expert list; the others are copied.
    variants: given.variants.filter((v) => !v.exclusive),
  }
  const sites = analyseSites(base.graph, base.initializers)
  const inputs = modelInputs(base.graph)
  const tokenizer =
    recipe.tokenizer && files.tokenizer
      ? await readRecipeTokenizer(recipe.tokenizer, files.tokenizer, inputs)
      : undefined
  const expertsBytes = (await Promise.all(paths.map((p) => stat(p)))).reduce(
    (a, s) => a + s.size,
    0,
  )
  step.done(
    `${planned.length} experts: ${planned.filter((p) => p.source === 'package').length} reused from the package, ${models.size} from model files`,
  )
  const names = planned.map((p) => p.name)
  await checkRoutingData(files.routing, recipe.router.kind, recipePath)
  const rstep = output.reporter.step('routing data')
  const removed = old.manifest.experts.map((e) => e.name).filter((n) => !names.includes(n))
  const examples = await readRoutingData(files.routing, names, inputs, {
    ...(recipe.router.max_per_expert ? { maxPerExpert: recipe.router.max_per_expert } : {}),
    ...(tokenizer ? { text: tokenizer.tokenizer } : {}),
    skip: removed,
  })
  const split = splitRouting(examples, names.length, {
    heldoutFraction: recipe.router.heldout_fraction,
    validationFraction: recipe.router.validation_fraction,
    seed: recipe.router.seed,
  })
  rstep.done(
    `${examples.length} examples: ${split.train.length} train, ${split.validation.length} validation, ${split.heldout.length} held out`,
  )
  const ctx: BuildContext = {
    recipe,
    files: { ...files, experts: paths },
    base,
    // Only the experts given as files are read; the kept ones live in the package (delta-knowledge.ts).
    experts: [...models.values()],
    expertsBytes,
    expertNames: names,
    sites,
    selected: selectExclusive(sites, recipe.exclusive),
    inputs,
    outputs: modelOutputs(base.graph),
    feature: features[0] as string,
    features,
    routerTokens: tokenRouterInputs(recipe, tokenizer?.json, inputs),
    ...(tokenizer ? { tokenizer } : {}),
    split,
    imported: {
      opset,
      forms: opsetForms(opset),
      liftedConstants: base.liftedConstants.length,
      externalInputs: false,
    },
    ...output,
  }
  return { ctx, models }
}

/** The old package's plain variants, copied byte for byte (a static merge does not depend on the router). */
async function copyVariants(
  old: OldPackage,
  staging: string,
  keep: readonly string[],
): Promise<{ files: WrittenFile[]; variants: VariantReport[] }> {
  const files: WrittenFile[] = []
  const variants: VariantReport[] = []
  for (const v of old.manifest.variants) {
    if (!keep.includes(v.name)) continue
    for (const [rel, sha256] of Object.entries(old.manifest.files)) {
      if (rel !== v.file && !rel.startsWith(`${v.file}.`)) continue
      const path = join(staging, rel)
      await mkdir(dirname(path), { recursive: true })
      await copyFile(join(old.dir, rel), path)
      files.push({ path, bytes: (await stat(path)).size, sha256 })
    }
    variants.push({ name: v.name, description: v.description ?? '', exclusive: false })
  }
  return { files, variants }
}

export async function buildDelta(
  recipePath: string,
  from: string,
  changes: readonly ExpertChange[],
  opts: BuildOptions,
): Promise<DeltaReport> {
  const reporter = opts.reporter ?? createReporter()
  const out = resolve(opts.out)
  if (resolve(from) === out)
    throw bad(`--out ${opts.out} is the --from package: a new version goes to a new directory`)
  if ((await exists(out)) && !opts.force)
    throw bad(`output directory ${opts.out} already exists (pass --force to replace it)`)
  const old = await openOld(resolve(from))
  const planned = planExperts(
    old.manifest.experts.map((e) => e.name),
    changes,
  )
  const staging = await createStaging(out)
  try {
    const { ctx, models } = await deltaContext(recipePath, old, planned, {
      staging,
      externalAbove: opts.externalDataAbove ?? EXTERNAL_ABOVE,
      reporter,
    })
    const { recipe } = ctx
    const shared = await deltaKnowledge(
      ctx,
      old,
      planned,
      models,
      recipe.shared_file ? variantFile('shared') : scratchFile('shared'),
    )
    const twin = await buildTwinModel(
      ctx,
      'twin',
      { model: shared.model, exclusive: shared.exclusive },
      'inputs',
      MODEL_FILE,
    )
    const kept = recipe.variants.map((v) => v.name)
    const copied = await copyVariants(old, staging, kept)
    const variants = [
      ...(recipe.shared_file
        ? [
            {
              name: 'shared',
              description: `shared model only (${recipe.shared.method}), no exclusive knowledge`,
              exclusive: false,
            },
          ]
        : []),
      ...copied.variants,
    ]
    const text = ctx.tokenizer ? await writeTokenizerFiles(staging, ctx.tokenizer) : undefined
    const files = [
      ...twin.files,
      ...(recipe.shared_file ? shared.files : []),
      ...copied.files,
      ...(text?.files ?? []),
    ]
    const written = await finishPackage(
      ctx,
      { out, label: opts.out, force: opts.force ?? false },
      packageManifest(ctx, twin, variants, text?.manifest),
      files,
      { sharedPath: shared.files[0]?.path ?? '', router: twin.router },
    )
    const fileSizes: Record<string, number> = {}
    for (const f of files) fileSizes[f.path.slice(staging.length + 1)] = f.bytes
    fileSizes['manifest.json'] = Buffer.byteLength(`${JSON.stringify(written.manifest, null, 2)}\n`)
    return {
      dir: out,
      manifest: written.manifest,
      graph: { ...ctx.imported, externalOutputs: files.some((f) => f.path.endsWith('.data')) },
      exclusive: twin.exclusive.rows,
      router: {
        ...twin.router,
        feature: ctx.feature,
        featureSize: twin.featureSize,
        examples: {
          train: ctx.split.train.length,
          validation: ctx.split.validation.length,
          heldout: ctx.split.heldout.length,
        },
      },
      variants,
      verification: written.verification,
      sizes: {
        packageBytes: Object.values(fileSizes).reduce((a, b) => a + b, 0),
        expertsBytes: ctx.expertsBytes,
        baseBytes: ctx.base.sizeBytes,
        files: fileSizes,
      },
      timings: reporter.timings,
      delta: {
        from: old.dir,
        reusedExperts: planned.filter((p) => p.source === 'package').map((p) => p.name),
        computedExperts: planned.filter((p) => p.source === 'model').map((p) => p.name),
        removedExperts: old.manifest.experts
          .map((e) => e.name)
          .filter((n) => !planned.some((p) => p.name === n)),
        reusedSharedTensors: shared.reused.length,
        copiedVariants: copied.variants.map((v) => v.name),
        droppedVariants: old.manifest.variants
          .filter((v) => !kept.includes(v.name))
          .map((v) => v.name),
      },
    }
  } catch (err) {
    await rm(staging, { recursive: true, force: true })
    throw err
  }
}

/** The lines the CLI prints above the build table: what was reused byte for byte and what was computed. */
export function formatDelta(d: DeltaReport['delta']): string {
  const list = (xs: readonly string[]) => (xs.length ? xs.join(', ') : 'none')
  return [
    `expert delta from ${d.from}:`,
    `  reused byte for byte: the shared model (${d.reusedSharedTensors} float tensors) and the factors of ${list(d.reusedExperts)}`,
    `  computed: exclusive knowledge of ${list(d.computedExperts)} against the same shared model; router refitted`,
    `  removed: ${list(d.removedExperts)}; variants copied: ${list(d.copiedVariants)}; dropped (routed per expert list): ${list(d.droppedVariants)}`,
    '',
  ].join('\n')
}
