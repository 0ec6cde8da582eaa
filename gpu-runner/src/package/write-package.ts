/**
 * Writes a twin package atomically: every file goes to a temporary sibling directory, the manifest gets the
 * sha256 of each, and only then is the directory renamed into place. A failed build leaves `--out` untouched.
 * @module
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { AppError, type PackageManifest, PackageManifestSchema } from '@twinserve/shared'

export type ManifestWithoutFiles = Omit<PackageManifest, 'files'>

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

/**
 * @param outDir  the package directory to create; must not exist unless `overwrite` is set
 * @param files   relative path → bytes (ONNX files, …); manifest.json is written from `manifest`
 */
export async function writePackage(
  outDir: string,
  manifest: ManifestWithoutFiles,
  files: Record<string, Uint8Array>,
  opts: { overwrite?: boolean } = {},
): Promise<PackageManifest> {
  if ((await exists(outDir)) && !opts.overwrite)
    throw new AppError(
      'INVALID_REQUEST',
      `output directory ${outDir} already exists (pass --force to replace it)`,
    )
  const hashes: Record<string, string> = {}
  for (const [rel, bytes] of Object.entries(files)) hashes[rel] = sha256(bytes)
  const full = PackageManifestSchema.parse({ ...manifest, files: hashes })

  const parent = dirname(outDir)
  await mkdir(parent, { recursive: true })
  const tmp = join(parent, `.${basename(outDir)}.tmp-${randomBytes(4).toString('hex')}`)
  try {
    for (const [rel, bytes] of Object.entries(files)) {
      await mkdir(dirname(join(tmp, rel)), { recursive: true })
      await writeFile(join(tmp, rel), bytes)
    }
    await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(full, null, 2)}\n`)
    if (opts.overwrite) await rm(outDir, { recursive: true, force: true })
    await rename(tmp, outDir)
  } catch (err) {
    await rm(tmp, { recursive: true, force: true })
    throw err
  }
  return full
}
