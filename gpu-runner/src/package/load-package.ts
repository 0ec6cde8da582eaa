/**
 * Loads a twin package and refuses anything that is not exactly what the builder wrote: a manifest that fails
 * its schema, a listed file that is missing or whose sha256 differs, or a model/variant file not listed.
 * @module
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AppError, type PackageManifest, PackageManifestSchema } from '@twinserve/shared'
import { sha256 } from './write-package.ts'

export interface LoadedPackage {
  dir: string
  manifest: PackageManifest
  /** The twin graph's bytes (hash-verified). */
  model: Uint8Array
  /** Variant name → plain graph bytes (hash-verified). */
  variants: Map<string, Uint8Array>
}

function invalid(dir: string, message: string, cause?: unknown): AppError {
  return new AppError(
    'INVALID_MODEL',
    `package ${dir}: ${message}`,
    cause === undefined ? undefined : { cause },
  )
}

export async function readManifest(dir: string): Promise<PackageManifest> {
  let text: string
  try {
    text = await readFile(join(dir, 'manifest.json'), 'utf8')
  } catch (err) {
    throw invalid(dir, 'manifest.json is missing or unreadable', err)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw invalid(dir, 'manifest.json is not valid JSON', err)
  }
  const parsed = PackageManifestSchema.safeParse(json)
  if (!parsed.success) {
    const first = parsed.error.issues[0]
    throw invalid(
      dir,
      `manifest.json is invalid at ${first?.path.join('.') || '(root)'}: ${first?.message}`,
    )
  }
  return parsed.data
}

/** A file's sha256, read in chunks (package files can be larger than a Buffer may hold). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) hash.update(chunk)
  return hash.digest('hex')
}

/** Reads every listed file and checks its hash; returns the model and variant bytes. */
export async function loadPackage(dir: string): Promise<LoadedPackage> {
  const manifest = await readManifest(dir)
  const bytes = new Map<string, Uint8Array>()
  for (const [rel, expected] of Object.entries(manifest.files)) {
    let data: Uint8Array
    try {
      data = await readFile(join(dir, rel))
    } catch (err) {
      throw invalid(dir, `file ${rel} listed in the manifest is missing`, err)
    }
    if (sha256(data) !== expected)
      throw invalid(dir, `file ${rel} does not match its sha256 (tampered or truncated)`)
    bytes.set(rel, data)
  }
  const need = (rel: string, what: string): Uint8Array => {
    const b = bytes.get(rel)
    if (!b) throw invalid(dir, `${what} file ${rel} is not listed in the manifest's files`)
    return b
  }
  const model = need(manifest.model.file, 'model')
  const variants = new Map<string, Uint8Array>()
  for (const v of manifest.variants) variants.set(v.name, need(v.file, `variant '${v.name}'`))
  return { dir, manifest, model, variants }
}
