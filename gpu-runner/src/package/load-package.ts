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

/** A graph `<file>` whose tensors are in `<file>.data` (written by the builder for graphs over 2 GB). */
export const EXTERNAL_DATA_SUFFIX = '.data'

/** The graph file to open by path (its external data beside it), or undefined when its bytes are enough. */
export function externalGraphPath(pkg: LoadedPackage, rel: string): string | undefined {
  return pkg.manifest.files[`${rel}${EXTERNAL_DATA_SUFFIX}`] === undefined
    ? undefined
    : join(pkg.dir, rel)
}

export interface LoadedPackage {
  dir: string
  manifest: PackageManifest
  /** The twin graph's bytes (hash-verified). */
  model: Uint8Array
  /** Variant name → plain graph bytes (hash-verified). */
  variants: Map<string, Uint8Array>
  /** The tokenizer files' bytes (hash-verified), when the package has a tokenizer. */
  tokenizer?: { json: Uint8Array; config?: Uint8Array }
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
    // External data (graphs over 2 GB) is hashed as a stream and left on disk: onnxruntime reads it from there.
    const external = rel.endsWith(EXTERNAL_DATA_SUFFIX)
    let data: Uint8Array | undefined
    let actual: string
    try {
      if (external) actual = await sha256File(join(dir, rel))
      else {
        data = await readFile(join(dir, rel))
        actual = sha256(data)
      }
    } catch (err) {
      throw invalid(dir, `file ${rel} listed in the manifest is missing`, err)
    }
    if (actual !== expected)
      throw invalid(dir, `file ${rel} does not match its sha256 (tampered or truncated)`)
    if (data) bytes.set(rel, data)
  }
  const need = (rel: string, what: string): Uint8Array => {
    const b = bytes.get(rel)
    if (!b) throw invalid(dir, `${what} file ${rel} is not listed in the manifest's files`)
    return b
  }
  const model = need(manifest.model.file, 'model')
  const variants = new Map<string, Uint8Array>()
  for (const v of manifest.variants) variants.set(v.name, need(v.file, `variant '${v.name}'`))
  const t = manifest.tokenizer
  const tokenizer = t && {
    json: need(t.file, 'tokenizer'),
    ...(t.config ? { config: need(t.config, 'tokenizer config') } : {}),
  }
  return { dir, manifest, model, variants, ...(tokenizer ? { tokenizer } : {}) }
}
