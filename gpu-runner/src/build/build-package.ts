/**
 * `twinserve build`: base + fine-tuned expert ONNX files and a recipe in, a verified twin package out.
 *
 * 1. read the recipe and every model (external data resolved), check each expert has the base's graph;
 * 2. shared model: the recipe's merge strategy over every float tensor, one tensor at a time;
 * 3. exclusive knowledge: v_t = θ_t − θ_shared for the selected tensors, matrices SVD-compressed;
 * 4. router: shared-model features of the routing data, an MLP (or prototypes) trained on the train split,
 *    early-stopped on the validation split, reported on the held-out split;
 * 5. the twin graph (route → merge → infer in one run) and the static variants (`shared`, then the recipe's);
 * 6. the package is written to a staging directory beside `--out`, verified from disk, and only then renamed
 *    into place: a failed build leaves `--out` as it was.
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { randomBytes } from 'node:crypto'
import { rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import {
  AppError,
  type MergeSpec,
  PACKAGE_FORMAT,
  PACKAGE_FORMAT_VERSION,
  type PackageManifest,
  type Recipe,
  SHARED_VARIANT,
} from '@twinserve/shared'
import { mergeTensor } from '../merge/index.ts'
import type { IModelProto } from '../onnx/proto.ts'
import { onnx } from '../onnx/proto.ts'
import { type ManifestWithoutFiles, writePackage } from '../package/write-package.ts'
import { checkOpset } from './graph/ops.ts'
import { TensorProbe } from './graph/probe.ts'
import { type RowLayout, rowLayout } from './graph/row-layout.ts'
import { analyseSites, type TensorSite } from './graph/weight-sites.ts'
import { assertSameGraph } from './import/compare-graphs.ts'
import {
  batchDim,
  fixedBatch,
  type IoTensor,
  modelInputs,
  modelOutputs,
  stackExamples,
  toMetadata,
} from './import/model-io.ts'
import {
  floatInitializers,
  type OnnxModel,
  readOnnx,
  tensorDims,
  withFloatInitializers,
} from './import/read-onnx.ts'
import { loadRecipe } from './import/recipe-file.ts'
import {
  computeExclusive,
  type ExclusiveKnowledge,
  selectExclusive,
} from './pipeline/exclusive-knowledge.ts'
import { createReporter, type Reporter } from './pipeline/progress.ts'
import { type VerifyResult, verifyPackage } from './pipeline/verify.ts'
import { extractFeatures, type Features } from './router/features.ts'
import { routerEmitter } from './router/router-graph.ts'
import {
  type RoutingExample,
  type RoutingSplit,
  readRoutingData,
  splitRouting,
} from './router/routing-data.ts'
import { type TrainedRouter, trainRouter } from './router/train-router.ts'
import { correctedOutputs } from './twin-graph/correction-targets.ts'
import { rewriteTwinGraph } from './twin-graph/rewrite.ts'

export interface BuildOptions {
  /** Package directory to create. */
  out: string
  /** Replace `out` if it exists (only after the new package is verified). */
  force?: boolean
  reporter?: Reporter
}

export interface VariantReport {
  name: string
  description: string
  exclusive: boolean
  heldoutAccuracy?: number
}

export interface BuildReport {
  dir: string
  manifest: PackageManifest
  exclusive: ExclusiveKnowledge['rows']
  router: TrainedRouter & {
    feature: string
    featureSize: number
    examples: { train: number; validation: number; heldout: number }
  }
  variants: VariantReport[]
  verification: VerifyResult
  sizes: {
    packageBytes: number
    expertsBytes: number
    baseBytes: number
    files: Record<string, number>
  }
  timings: { label: string; seconds: number }[]
}

const MODEL_FILE = 'model.onnx'
const variantFile = (name: string) => `variants/${name}.onnx`

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

/** The input of the last MatMul/Gemm in graph order: the shared model's last hidden features. */
export function defaultFeature(model: OnnxModel): string {
  const nodes = model.graph.node ?? []
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]
    if ((n?.opType === 'MatMul' || n?.opType === 'Gemm') && n.input?.[0]) return n.input[0]
  }
  throw new AppError(
    'INVALID_MODEL',
    `${model.path} has no MatMul/Gemm; name the router feature in the recipe`,
  )
}

function checkFeature(model: OnnxModel, feature: string): void {
  const produced = new Set<string>()
  for (const n of model.graph.node ?? []) for (const o of n.output ?? []) produced.add(o)
  for (const i of model.graph.input ?? []) produced.add(i.name ?? '')
  if (!produced.has(feature))
    throw new AppError(
      'INVALID_REQUEST',
      `router.feature '${feature}' is not a tensor of the base graph (${model.path}); name a node output or input`,
    )
}

function mergeAll(
  spec: MergeSpec,
  base: OnnxModel,
  baseValues: ReadonlyMap<string, Float32Array>,
  experts: readonly ReadonlyMap<string, Float32Array>[],
  names: readonly string[],
  onTensor: (done: number, total: number) => void,
): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  let done = 0
  for (const [name, b] of baseValues) {
    const t = base.initializers.get(name)
    out.set(
      name,
      mergeTensor(spec, {
        base: b,
        experts: experts.map((e) => e.get(name) as Float32Array),
        names,
        shape: t ? tensorDims(t) : [b.length],
        tensorName: name,
      }),
    )
    onTensor(++done, baseValues.size)
  }
  return out
}

function encode(model: IModelProto, metadata: Record<string, string>): Uint8Array {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
  const props = (copy.metadataProps ?? []).filter((p) => !(p.key ?? '').startsWith('twinserve.'))
  copy.metadataProps = [
    ...props,
    ...Object.entries(metadata).map(([key, value]) => ({ key, value })),
  ]
  copy.producerName = 'twinserve build'
  return onnx.ModelProto.encode(copy).finish()
}

/** Probe feeds: the first `batch` routing examples (or as many as there are, repeated). */
function probeFeeds(
  inputs: readonly IoTensor[],
  examples: readonly RoutingExample[],
  batch: number,
) {
  const first = examples[0]
  if (!first) throw new AppError('INVALID_REQUEST', 'router data is empty')
  const key = (e: RoutingExample) =>
    Object.values(e.inputs)
      .map((v) => v.length)
      .join(',')
  const same = examples.filter((e) => key(e) === key(first))
  const rows = Array.from(
    { length: batch },
    (_, i) => (same[i % same.length] as RoutingExample).inputs,
  )
  return stackExamples(inputs, rows, 'router data')
}

interface TwinBuild {
  bytes: Uint8Array
  router: TrainedRouter
  exclusive: ExclusiveKnowledge
  featureSize: number
}

interface Context {
  recipe: Recipe
  base: OnnxModel
  baseValues: Map<string, Float32Array>
  expertValues: Map<string, Float32Array>[]
  expertNames: string[]
  sites: Map<string, TensorSite>
  selected: TensorSite[]
  inputs: IoTensor[]
  feature: string
  split: RoutingSplit
  reporter: Reporter
}

/** Exclusive knowledge against `shared`, a router on `shared`'s features, and the rewritten graph. */
async function buildTwin(
  ctx: Context,
  label: string,
  shared: Map<string, Float32Array>,
  controls: 'inputs' | 'router',
): Promise<TwinBuild> {
  const { recipe, reporter } = ctx
  const T = ctx.expertNames.length
  const sharedModel = withFloatInitializers(ctx.base.model, shared)

  let step = reporter.step(`${label}: exclusive knowledge`, ctx.selected.length)
  const exclusive = await computeExclusive({
    selected: ctx.selected,
    shared,
    experts: ctx.expertValues,
    spec: recipe.exclusive,
    onTensor: (d, t) => step.tick(d, t),
  })
  const totalRank = exclusive.matrices.reduce((a, m) => a + m.sigma.length, 0)
  step.done(
    `${exclusive.matrices.length} matrices (Σ rank ${totalRank}), ${exclusive.vectors.length} vectors`,
  )

  // Shapes: how each rewritten node's output and the feature line up with the batch.
  const outputs = correctedOutputs(ctx.base.model, ctx.sites, [
    ...exclusive.matrices,
    ...exclusive.vectors,
  ])
  const probeNames = [...new Set([...outputs, ctx.feature])]
  const fixed = fixedBatch(ctx.inputs)
  const batches = fixed === undefined ? [3, 5] : [fixed]
  const probe = await TensorProbe.open(sharedModel, probeNames)
  const layouts = new Map<string, RowLayout>()
  try {
    const runs = []
    for (const b of batches)
      runs.push({
        batch: b,
        out: await probe.run(probeFeeds(ctx.inputs, ctx.split.train, b), probeNames),
      })
    for (const n of probeNames)
      layouts.set(
        n,
        rowLayout(
          n,
          runs.map((r) => ({ batch: r.batch, dims: r.out.get(n)?.dims ?? [] })),
        ),
      )
  } finally {
    await probe.release()
  }

  step = reporter.step(
    `${label}: router features`,
    ctx.split.train.length + ctx.split.validation.length + ctx.split.heldout.length,
  )
  let offset = 0
  const feats = async (examples: RoutingExample[]): Promise<Features> => {
    const f = await extractFeatures(sharedModel, ctx.feature, ctx.inputs, examples, {
      onBatch: (d) => step.tick(offset + d),
    })
    offset += examples.length
    return f
  }
  const train = await feats(ctx.split.train)
  const validation = await feats(ctx.split.validation)
  const heldout = await feats(ctx.split.heldout)
  step.done(`${train.d}-d '${ctx.feature}'`)

  step = reporter.step(
    `${label}: router (${recipe.router.kind})`,
    recipe.router.kind === 'mlp' ? recipe.router.epochs : undefined,
  )
  const router = await trainRouter(recipe.router, { train, validation, heldout }, T, {
    onEpoch: (e) => step.tick(e),
  })
  step.done(
    `held-out accuracy ${(router.heldoutAccuracy * 100).toFixed(1)}% on ${heldout.y.length}`,
  )

  const twin = rewriteTwinGraph({
    model: sharedModel,
    sites: ctx.sites,
    matrices: exclusive.matrices,
    vectors: exclusive.vectors,
    experts: T,
    layouts,
    feature: { tensor: ctx.feature, layout: layouts.get(ctx.feature) as RowLayout },
    router: routerEmitter(router.model),
    controls,
    batchDim: batchDim(ctx.inputs),
    factorDtype: recipe.exclusive.dtype,
    ...(recipe.exclusive.topk_gather !== undefined
      ? { topkGather: recipe.exclusive.topk_gather }
      : {}),
  })
  const bytes = encode(twin, {
    'twinserve.package': recipe.name,
    'twinserve.experts': JSON.stringify(ctx.expertNames),
    'twinserve.graph': controls === 'inputs' ? 'twin' : `variant:${label}`,
  })
  return { bytes, router, exclusive, featureSize: train.d }
}

export async function buildPackage(recipePath: string, opts: BuildOptions): Promise<BuildReport> {
  const reporter = opts.reporter ?? createReporter()
  const out = resolve(opts.out)
  if ((await exists(out)) && !opts.force)
    throw new AppError(
      'INVALID_REQUEST',
      `output directory ${opts.out} already exists (pass --force to replace it)`,
    )

  let step = reporter.step('reading recipe and models')
  const loaded = await loadRecipe(recipePath)
  const { recipe } = loaded
  const base = await readOnnx(loaded.files.base)
  checkOpset(base.model, base.path)
  const expertModels: OnnxModel[] = []
  for (const [i, e] of recipe.experts.entries()) {
    const m = await readOnnx(loaded.files.experts[i] as string)
    assertSameGraph(base, m, e.name)
    expertModels.push(m)
    step.tick(i + 1, recipe.experts.length)
  }
  const inputs = modelInputs(base.graph)
  const outputs = modelOutputs(base.graph)
  const sites = analyseSites(base.graph, base.initializers)
  const selected = selectExclusive(sites, recipe.exclusive)
  const feature = recipe.router.feature ?? defaultFeature(base)
  checkFeature(base, feature)
  const baseValues = floatInitializers(base)
  const expertValues = expertModels.map(floatInitializers)
  const expertNames = recipe.experts.map((e) => e.name)
  step.done(
    `${recipe.experts.length} experts, ${baseValues.size} float tensors, ${selected.length} selected for exclusive knowledge`,
  )

  step = reporter.step('routing data')
  const examples = await readRoutingData(loaded.files.routing, expertNames, inputs, {
    ...(recipe.router.max_per_expert ? { maxPerExpert: recipe.router.max_per_expert } : {}),
  })
  const split = splitRouting(examples, expertNames.length, {
    heldoutFraction: recipe.router.heldout_fraction,
    validationFraction: recipe.router.validation_fraction,
    seed: recipe.router.seed,
  })
  step.done(
    `${examples.length} examples: ${split.train.length} train, ${split.validation.length} validation, ${split.heldout.length} held out`,
  )
  const ctx: Context = {
    recipe,
    base,
    baseValues,
    expertValues,
    expertNames,
    sites,
    selected,
    inputs,
    feature,
    split,
    reporter,
  }

  step = reporter.step(`shared model (${recipe.shared.method})`, baseValues.size)
  const shared = mergeAll(recipe.shared, base, baseValues, expertValues, expertNames, (d, t) =>
    step.tick(d, t),
  )
  step.done()

  const twin = await buildTwin(ctx, 'twin', shared, 'inputs')
  const files: Record<string, Uint8Array> = { [MODEL_FILE]: twin.bytes }
  const variants: VariantReport[] = []
  const variantMeta = (name: string) => ({
    'twinserve.package': recipe.name,
    'twinserve.experts': JSON.stringify(expertNames),
    'twinserve.graph': `variant:${name}`,
  })
  // The shared model as a plain graph: written as a variant file, or (shared_file: false) kept only to verify
  // the twin graph at zero weights against, since the runner then serves `shared` from the twin graph.
  const sharedBytes = encode(withFloatInitializers(base.model, shared), variantMeta(SHARED_VARIANT))
  if (recipe.shared_file) {
    files[variantFile(SHARED_VARIANT)] = sharedBytes
    variants.push({
      name: SHARED_VARIANT,
      description: `shared model only (${recipe.shared.method}), no exclusive knowledge`,
      exclusive: false,
    })
  }
  for (const v of recipe.variants) {
    step = reporter.step(`variant '${v.name}' (${v.shared.method})`, baseValues.size)
    const merged = mergeAll(v.shared, base, baseValues, expertValues, expertNames, (d, t) =>
      step.tick(d, t),
    )
    step.done()
    if (!v.exclusive) {
      files[variantFile(v.name)] = encode(
        withFloatInitializers(base.model, merged),
        variantMeta(v.name),
      )
      variants.push({
        name: v.name,
        description: v.description ?? `static ${v.shared.method} merge`,
        exclusive: false,
      })
    } else {
      const vt = await buildTwin(ctx, v.name, merged, 'router')
      files[variantFile(v.name)] = vt.bytes
      variants.push({
        name: v.name,
        description:
          v.description ?? `${v.shared.method} merge + exclusive knowledge, routed (dense)`,
        exclusive: true,
        heldoutAccuracy: vt.router.heldoutAccuracy,
      })
    }
  }

  const manifest: ManifestWithoutFiles = {
    format: PACKAGE_FORMAT,
    formatVersion: PACKAGE_FORMAT_VERSION,
    name: recipe.name,
    createdAt: new Date().toISOString(),
    experts: expertNames.map((name, index) => ({ name, index })),
    inputs: inputs.map(toMetadata),
    outputs: outputs.map(toMetadata),
    model: { file: MODEL_FILE },
    router: {
      kind: recipe.router.kind,
      feature,
      featureSize: twin.featureSize,
      heldoutAccuracy: twin.router.heldoutAccuracy,
    },
    exclusive: twin.exclusive.rows
      .filter((r) => r.kind === 'vector' || (r.ranks ?? []).some((k) => k > 0))
      .map((r) => ({
        name: r.name,
        kind: r.kind,
        shape: r.shape,
        ...(r.ranks ? { ranks: r.ranks } : {}),
        relError: r.relError,
      })),
    variants: variants.map((v) => ({
      name: v.name,
      file: variantFile(v.name),
      description: v.description,
      exclusive: v.exclusive,
    })),
    recipe,
  }

  // Stage beside --out (same filesystem, so the final rename is atomic), verify from disk, then move into place.
  const staging = join(dirname(out), `.${basename(out)}.build-${randomBytes(4).toString('hex')}`)
  let verification: VerifyResult
  let written: PackageManifest
  try {
    written = await writePackage(staging, manifest, files)
    step = reporter.step('verification')
    const checks = expertNames.flatMap((_, e) => {
      const pool = [...split.heldout, ...split.validation, ...split.train].filter(
        (x) => x.expert === e,
      )
      return pool.slice(0, recipe.verify.examples_per_expert)
    })
    verification = await verifyPackage({
      dir: staging,
      inputs,
      outputs: outputs.filter((o) => o.elem === 'float').map((o) => o.name),
      experts: expertNames.map((name, i) => ({ name, path: loaded.files.experts[i] as string })),
      shared: sharedBytes,
      checks,
      heldout: split.heldout,
      heldoutPredictions: twin.router.heldoutPredictions,
      onProgress: (d, t) => step.tick(d, t),
    })
    step.done(`router agreement ${(verification.routerAgreement * 100).toFixed(1)}%`)
    if (await exists(out)) {
      if (!opts.force)
        throw new AppError(
          'INVALID_REQUEST',
          `output directory ${opts.out} appeared during the build; not replacing it`,
        )
      await rm(out, { recursive: true, force: true })
    }
    await rename(staging, out)
  } catch (err) {
    await rm(staging, { recursive: true, force: true })
    throw err
  }

  const fileSizes: Record<string, number> = {}
  for (const [rel, bytes] of Object.entries(files)) fileSizes[rel] = bytes.byteLength
  const manifestBytes = Buffer.byteLength(`${JSON.stringify(written, null, 2)}\n`)
  fileSizes['manifest.json'] = manifestBytes
  return {
    dir: out,
    manifest: written,
    exclusive: twin.exclusive.rows,
    router: {
      ...twin.router,
      feature,
      featureSize: twin.featureSize,
      examples: {
        train: split.train.length,
        validation: split.validation.length,
        heldout: split.heldout.length,
      },
    },
    variants,
    verification,
    sizes: {
      packageBytes: Object.values(fileSizes).reduce((a, b) => a + b, 0),
      expertsBytes: expertModels.reduce((a, m) => a + m.sizeBytes, 0),
      baseBytes: base.sizeBytes,
      files: fileSizes,
    },
    timings: reporter.timings,
  }
}
