/**
 * Build step: the package is written to a staging directory beside `--out` (same filesystem, so the final rename
 * is atomic), verified from disk, and only then renamed into place: a failed build leaves `--out` as it was.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { AppError, type PackageManifest } from '@twinserve/shared'
import { type ManifestWithoutFiles, writePackage } from '../../package/write-package.ts'
import type { TrainedRouter } from '../router/train-router.ts'
import type { BuildContext } from './build-context.ts'
import { type VerifyResult, verifyPackage } from './verify.ts'

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

/** Verification against the staged package: check inputs per expert (held-out first), the router's split. */
function verifyStaged(
  ctx: BuildContext,
  dir: string,
  sharedBytes: Uint8Array,
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
    dir,
    inputs: ctx.inputs,
    outputs: ctx.outputs.filter((o) => o.elem === 'float').map((o) => o.name),
    experts: ctx.expertNames.map((name, i) => ({ name, path: ctx.files.experts[i] as string })),
    shared: sharedBytes,
    checks,
    heldout: split.heldout,
    heldoutPredictions: router.heldoutPredictions,
    onProgress: (d, t) => step.tick(d, t),
  }).then((result) => {
    step.done(`router agreement ${(result.routerAgreement * 100).toFixed(1)}%`)
    return result
  })
}

export async function writeVerified(
  ctx: BuildContext,
  target: WriteTarget,
  manifest: ManifestWithoutFiles,
  files: Record<string, Uint8Array>,
  verifyWith: { sharedBytes: Uint8Array; router: TrainedRouter },
): Promise<{ manifest: PackageManifest; verification: VerifyResult }> {
  const { out } = target
  const staging = join(dirname(out), `.${basename(out)}.build-${randomBytes(4).toString('hex')}`)
  try {
    const written = await writePackage(staging, manifest, files)
    const verification = await verifyStaged(ctx, staging, verifyWith.sharedBytes, verifyWith.router)
    if (await exists(out)) {
      if (!target.force)
        throw new AppError(
          'INVALID_REQUEST',
          `output directory ${target.label} appeared during the build; not replacing it`,
        )
      await rm(out, { recursive: true, force: true })
    }
    await rename(staging, out)
    return { manifest: written, verification }
  } catch (err) {
    await rm(staging, { recursive: true, force: true })
    throw err
  }
}
