/**
 * Build step: the package is built in a staging directory beside `--out` (same filesystem, so the final rename is
 * atomic): every step writes its files there, this one adds the manifest (with the sha256 each writer computed),
 * verifies the package from disk, removes the scratch files, and only then renames it into place. A failed build
 * removes the staging directory and leaves `--out` as it was.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, relative } from 'node:path'
import { AppError, type PackageManifest, PackageManifestSchema } from '@twinserve/shared'
import type { ManifestWithoutFiles } from '../../package/write-package.ts'
import type { TrainedRouter } from '../router/train-router.ts'
import type { BuildContext } from './build-context.ts'
import { type VerifyResult, verifyPackage } from './verify.ts'
import type { WrittenFile } from './write-model.ts'

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

export interface WriteTarget {
  /** Absolute package directory. */
  out: string
  /** As the user gave it, for messages. */
  label: string
  force: boolean
}

/** A fresh staging directory beside `out`. */
export async function createStaging(out: string): Promise<string> {
  await mkdir(dirname(out), { recursive: true })
  const staging = join(dirname(out), `.${basename(out)}.build-${randomBytes(4).toString('hex')}`)
  await mkdir(staging)
  return staging
}

/** Verification against the staged package: check inputs per expert (held-out first), the router's split. */
function verifyStaged(
  ctx: BuildContext,
  sharedPath: string,
  router: TrainedRouter,
): Promise<VerifyResult> {
  const { split, recipe } = ctx
  const step = ctx.reporter.step('verification')
  const checks = ctx.expertNames.flatMap((_, e) => {
    const pool = [...split.heldout, ...split.validation, ...split.train].filter(
      (x) => x.expert === e,
    )
    return pool.slice(0, recipe.verify.examples_per_expert)
  })
  return verifyPackage({
    dir: ctx.staging,
    inputs: ctx.inputs,
    outputs: ctx.outputs.filter((o) => o.elem === 'float').map((o) => o.name),
    experts: ctx.expertNames.map((name, i) => ({ name, path: ctx.files.experts[i] as string })),
    shared: sharedPath,
    checks,
    heldout: split.heldout,
    heldoutPredictions: router.heldoutPredictions,
    onProgress: (d, t) => step.tick(d, t),
  }).then((result) => {
    step.done(`router agreement ${(result.routerAgreement * 100).toFixed(1)}%`)
    return result
  })
}

/** Removes the staging directory's scratch files (dot-named: sessions' model files, merges kept only to build). */
async function removeScratch(staging: string): Promise<void> {
  for (const name of await readdir(staging))
    if (name.startsWith('.')) await rm(join(staging, name), { recursive: true, force: true })
}

/**
 * Writes the manifest of the files in staging, verifies, and renames the staging directory to `out`.
 * @param files the package's files as written (scratch files are not among them)
 * @param verifyWith the shared model's file (the `shared` variant or a scratch merge) and the trained router
 */
export async function finishPackage(
  ctx: BuildContext,
  target: WriteTarget,
  manifest: ManifestWithoutFiles,
  files: readonly WrittenFile[],
  verifyWith: { sharedPath: string; router: TrainedRouter },
): Promise<{ manifest: PackageManifest; verification: VerifyResult }> {
  const hashes: Record<string, string> = {}
  for (const f of files) hashes[relative(ctx.staging, f.path)] = f.sha256
  let full = PackageManifestSchema.parse({ ...manifest, files: hashes })
  const manifestPath = join(ctx.staging, 'manifest.json')
  await writeFile(manifestPath, `${JSON.stringify(full, null, 2)}\n`)
  const verification = await verifyStaged(ctx, verifyWith.sharedPath, verifyWith.router)
  // The drift baseline is what verification measured of the embedded router; the manifest is not among the
  // hashed files (nor in the package's version), so adding it now changes neither.
  if (verification.routingProfile) {
    full = PackageManifestSchema.parse({ ...full, routingProfile: verification.routingProfile })
    await writeFile(manifestPath, `${JSON.stringify(full, null, 2)}\n`)
  }
  await removeScratch(ctx.staging)
  if (await exists(target.out)) {
    if (!target.force)
      throw new AppError(
        'INVALID_REQUEST',
        `output directory ${target.label} appeared during the build; not replacing it`,
      )
    await rm(target.out, { recursive: true, force: true })
  }
  await rename(ctx.staging, target.out)
  return { manifest: full, verification }
}
