/**
 * `twinserve build`: base + fine-tuned expert ONNX files and a recipe in, a verified twin package out. The steps,
 * each in pipeline/:
 * 1. read the recipe and every model, check each expert has the base's graph (load-inputs.ts);
 * 2. shared model: the recipe's merge strategy over every float tensor, one tensor at a time (shared-merge.ts);
 * 3. the twin graph (twin-model.ts): exclusive knowledge v_t = θ_t − θ_shared for the selected tensors, matrices
 *    SVD-compressed (exclusive-knowledge.ts); the row layouts (row-layouts.ts); a router on shared-model features
 *    of the routing data (router-training.ts); the rewrite (twin-graph/);
 * 4. the static variants, `shared` then the recipe's (variants.ts), and the manifest (manifest.ts);
 * 5. the package is written to a staging directory beside `--out`, verified from disk, and only then renamed
 *    into place: a failed build leaves `--out` as it was (write-verified.ts, verify.ts).
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { resolve } from 'node:path'
import { AppError, type PackageManifest, SHARED_VARIANT } from '@twinserve/shared'
import { withFloatInitializers } from './import/read-onnx.ts'
import type { ExclusiveKnowledge } from './pipeline/exclusive-knowledge.ts'
import { encodeGraph } from './pipeline/graph-file.ts'
import { loadInputs } from './pipeline/load-inputs.ts'
import { MODEL_FILE, packageManifest } from './pipeline/manifest.ts'
import { createReporter, type Reporter } from './pipeline/progress.ts'
import { mergeAll } from './pipeline/shared-merge.ts'
import { buildTwinModel } from './pipeline/twin-model.ts'
import { buildVariants, type VariantReport } from './pipeline/variants.ts'
import type { VerifyResult } from './pipeline/verify.ts'
import { exists, writeVerified } from './pipeline/write-verified.ts'
import type { TrainedRouter } from './router/train-router.ts'

export type { VariantReport } from './pipeline/variants.ts'

export interface BuildOptions {
  /** Package directory to create. */
  out: string
  /** Replace `out` if it exists (only after the new package is verified). */
  force?: boolean
  reporter?: Reporter
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

export async function buildPackage(recipePath: string, opts: BuildOptions): Promise<BuildReport> {
  const reporter = opts.reporter ?? createReporter()
  const out = resolve(opts.out)
  if ((await exists(out)) && !opts.force)
    throw new AppError(
      'INVALID_REQUEST',
      `output directory ${opts.out} already exists (pass --force to replace it)`,
    )
  const ctx = await loadInputs(recipePath, reporter)
  const { recipe, split } = ctx
  const shared = mergeAll(ctx, recipe.shared, `shared model (${recipe.shared.method})`)
  const twin = await buildTwinModel(ctx, 'twin', shared, 'inputs')
  const sharedBytes = encodeGraph(
    ctx,
    withFloatInitializers(ctx.base.model, shared),
    SHARED_VARIANT,
  )
  const built = await buildVariants(ctx, sharedBytes)
  const files = { [MODEL_FILE]: twin.bytes, ...built.files }
  const written = await writeVerified(
    ctx,
    { out, label: opts.out, force: opts.force ?? false },
    packageManifest(ctx, twin, built.variants),
    files,
    { sharedBytes, router: twin.router },
  )

  const fileSizes: Record<string, number> = {}
  for (const [rel, bytes] of Object.entries(files)) fileSizes[rel] = bytes.byteLength
  fileSizes['manifest.json'] = Buffer.byteLength(`${JSON.stringify(written.manifest, null, 2)}\n`)
  return {
    dir: out,
    manifest: written.manifest,
    exclusive: twin.exclusive.rows,
    router: {
      ...twin.router,
      feature: ctx.feature,
      featureSize: twin.featureSize,
      examples: {
        train: split.train.length,
        validation: split.validation.length,
        heldout: split.heldout.length,
      },
    },
    variants: built.variants,
    verification: written.verification,
    sizes: {
      packageBytes: Object.values(fileSizes).reduce((a, b) => a + b, 0),
      expertsBytes: ctx.expertsBytes,
      baseBytes: ctx.base.sizeBytes,
      files: fileSizes,
    },
    timings: reporter.timings,
  }
}
