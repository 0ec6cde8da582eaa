/**
 * `twinserve build`: base + fine-tuned expert ONNX files and a recipe in, a verified twin package out. The steps,
 * each in pipeline/:
 * 1. read the recipe and every model as skeletons, normalised, check each expert has the base's graph
 *    (load-inputs.ts);
 * 2. one streamed pass over the float tensors: each read from the base and every expert, merged by the recipe's
 *    strategy, its exclusive knowledge v_t = θ_t − θ_shared collected (matrices SVD-compressed), and written
 *    into the shared model's file before the next is read (shared-merge.ts, exclusive-knowledge.ts);
 * 3. the twin graph (twin-model.ts): where the batch is in every tensor (row-layouts.ts), a router on
 *    shared-model features of the routing data (router-training.ts), the rewrite (twin-graph/), written tensor
 *    by tensor (write-model.ts);
 * 4. the static variants (variants.ts), the tokenizer files of a text model (text-tokenizer.ts) and the manifest
 *    (manifest.ts);
 * 5. everything is written into a staging directory beside `--out`, verified from disk one session at a time,
 *    and only then renamed into place: a failed build leaves `--out` as it was (write-verified.ts, verify.ts).
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */

import { rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { AppError, type PackageManifest } from '@twinserve/shared'
import type { ImportReport } from './pipeline/build-context.ts'
import type { ExclusiveKnowledge, SharedOnlyRow } from './pipeline/exclusive-knowledge.ts'
import { loadInputs } from './pipeline/load-inputs.ts'
import { MODEL_FILE, packageManifest } from './pipeline/manifest.ts'
import { createReporter, type Reporter } from './pipeline/progress.ts'
import { mergeToFile } from './pipeline/shared-merge.ts'
import { writeTokenizerFiles } from './pipeline/text-tokenizer.ts'
import { buildTwinModel } from './pipeline/twin-model.ts'
import { buildVariants, scratchFile, type VariantReport, variantFile } from './pipeline/variants.ts'
import type { VerifyResult } from './pipeline/verify.ts'
import { EXTERNAL_ABOVE } from './pipeline/write-model.ts'
import { createStaging, exists, finishPackage } from './pipeline/write-verified.ts'
import type { TrainedRouter } from './router/train-router.ts'

export type { VariantReport } from './pipeline/variants.ts'

export interface BuildOptions {
  /** Package directory to create. */
  out: string
  /** Replace `out` if it exists (only after the new package is verified). */
  force?: boolean
  reporter?: Reporter
  /**
   * Package graphs above this many bytes are written with external data files (`<graph>.onnx.data`). Default:
   * just under protobuf's 2 GB limit, so only graphs that cannot be one file are split.
   */
  externalDataAbove?: number
}

export interface BuildReport {
  dir: string
  manifest: PackageManifest
  /** The models as read: opset (kept) and the op forms emitted for it, Constant weights lifted, external data. */
  graph: ImportReport & {
    /** Whether the package's graphs were written with external data files. */
    externalOutputs: boolean
  }
  exclusive: ExclusiveKnowledge['rows']
  /**
   * Tensors the experts changed that carry no exclusive knowledge (every expert gets the shared value there), with
   * the reason; from full builds (a `--from` build reuses the old package's choice and leaves this out).
   */
  sharedOnly?: SharedOnlyRow[]
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
  const staging = await createStaging(out)
  try {
    return await buildInto(recipePath, opts, reporter, { out, staging })
  } catch (err) {
    await rm(staging, { recursive: true, force: true })
    throw err
  }
}

async function buildInto(
  recipePath: string,
  opts: BuildOptions,
  reporter: Reporter,
  where: { out: string; staging: string },
): Promise<BuildReport> {
  const ctx = await loadInputs(recipePath, reporter, {
    staging: where.staging,
    externalAbove: opts.externalDataAbove ?? EXTERNAL_ABOVE,
  })
  const { recipe, split } = ctx
  const sharedRel = recipe.shared_file ? variantFile('shared') : scratchFile('shared')
  const shared = await mergeToFile(
    ctx,
    recipe.shared,
    `shared model (${recipe.shared.method}) and exclusive knowledge`,
    { rel: sharedRel, variant: 'shared' },
    true,
  )
  const twin = await buildTwinModel(
    ctx,
    'twin',
    { model: shared.model, exclusive: shared.exclusive ?? { matrices: [], vectors: [], rows: [] } },
    'inputs',
    MODEL_FILE,
  )
  const built = await buildVariants(ctx)
  const text = ctx.tokenizer ? await writeTokenizerFiles(where.staging, ctx.tokenizer) : undefined
  const files = [
    ...twin.files,
    ...(recipe.shared_file ? shared.files : []),
    ...built.files,
    ...(text?.files ?? []),
  ]
  const written = await finishPackage(
    ctx,
    { out: where.out, label: opts.out, force: opts.force ?? false },
    packageManifest(ctx, twin, built.variants, text?.manifest),
    files,
    { sharedPath: shared.files[0]?.path ?? '', router: twin.router },
  )
  const fileSizes: Record<string, number> = {}
  for (const f of files) fileSizes[f.path.slice(where.staging.length + 1)] = f.bytes
  fileSizes['manifest.json'] = Buffer.byteLength(`${JSON.stringify(written.manifest, null, 2)}\n`)
  return {
    dir: where.out,
    manifest: written.manifest,
    graph: { ...ctx.imported, externalOutputs: files.some((f) => f.path.endsWith('.data')) },
    exclusive: twin.exclusive.rows,
    sharedOnly: shared.sharedOnly ?? [],
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
