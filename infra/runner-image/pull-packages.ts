/**
 * Pulls twin packages from object storage into a local cache directory before the runner starts, and refuses
 * anything that is not exactly what the builder wrote: the check is the runner's own `loadPackage` (manifest
 * schema, every listed file present with its sha256), run on the staged copy before it is renamed into place.
 * A failed pull leaves the cache as it was: files are staged in a temporary directory beside the target and only
 * a verified package replaces the previous one.
 *
 * A package already in the cache with the same manifest bytes is verified and reused without downloading, so a
 * restarted container on a persistent volume starts without pulling again.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { loadPackage, readManifest } from '@twinserve/gpu-runner/package'
import type { Logger } from '@twinserve/gpu-runner/server'
import { createObjectStore, type ObjectStore, type StoreOptions } from './object-store.ts'
import { type PackageSource, type PullConfig, PullError } from './pull-config.ts'

export interface PulledPackage {
  source: string
  name: string
  /** The verified package directory (absolute). */
  dir: string
  /** True when the cached copy matched the source's manifest and nothing was downloaded. */
  reused: boolean
  files: number
  /** Bytes downloaded (0 when reused). */
  bytes: number
}

export interface PullOptions extends StoreOptions {
  logger?: Logger
  /** Files downloaded at once per package. */
  concurrency?: number
}

const MANIFEST = 'manifest.json'

async function readBytes(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer())
}

/** A manifest path resolved inside `root`, or an error (the schema already refuses `..`; this is the backstop). */
function inside(root: string, rel: string): string {
  const path = resolve(root, rel)
  if (!path.startsWith(`${root}${sep}`))
    throw new PullError(`manifest lists '${rel}', outside the package`)
  return path
}

async function download(store: ObjectStore, rel: string, path: string): Promise<number> {
  const res = await store.get(rel)
  await mkdir(dirname(path), { recursive: true })
  let bytes = 0
  const body = res.body
  if (!body) {
    await writeFile(path, new Uint8Array(0))
    return 0
  }
  const counted = Readable.fromWeb(body as WebReadableStream<Uint8Array>)
  counted.on('data', (chunk: Buffer) => {
    bytes += chunk.length
  })
  try {
    await pipeline(counted, createWriteStream(path))
  } catch (err) {
    throw new PullError(`${store.describe(rel)}: download interrupted`, { cause: err })
  }
  return bytes
}

/** Runs `fn` over `items` with at most `limit` in flight; rejects with the first failure after all settle. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (t: T) => Promise<void>) {
  let next = 0
  const errors: unknown[] = []
  const worker = async () => {
    while (next < items.length && errors.length === 0) {
      const item = items[next++] as T
      await fn(item).catch((err: unknown) => {
        errors.push(err)
      })
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  if (errors.length > 0) throw errors[0]
}

async function sameBytes(path: string, bytes: Uint8Array): Promise<boolean> {
  const existing = await readFile(path).catch(() => undefined)
  return existing !== undefined && Buffer.compare(existing, bytes) === 0
}

/** Pulls one package into `<cacheDir>/<manifest name>`. @throws PullError naming the source and file */
export async function pullPackage(
  source: PackageSource,
  config: PullConfig,
  opts: PullOptions = {},
): Promise<PulledPackage> {
  const store = createObjectStore(source, config, opts)
  const cacheDir = resolve(config.cacheDir)
  await mkdir(cacheDir, { recursive: true })
  const manifestBytes = await readBytes(await store.get(MANIFEST))

  // Staged beside the target so that the final rename stays on one filesystem (atomic).
  const stage = await mkdtemp(join(cacheDir, '.pull-'))
  try {
    await writeFile(join(stage, MANIFEST), manifestBytes)
    const manifest = await readManifest(stage).catch((err: unknown) => {
      throw new PullError(
        `${store.describe(MANIFEST)}: ${err instanceof Error ? err.message : String(err)}`,
      )
    })
    const target = join(cacheDir, manifest.name)
    const rels = Object.keys(manifest.files)

    if (await sameBytes(join(target, MANIFEST), manifestBytes)) {
      const cached = await loadPackage(target).catch(() => undefined)
      if (cached)
        return {
          source: source.url,
          name: manifest.name,
          dir: target,
          reused: true,
          files: rels.length,
          bytes: 0,
        }
      opts.logger?.warn('cached package failed verification; pulling again', { dir: target })
    }

    let bytes = 0
    await eachLimited(rels, opts.concurrency ?? 4, async (rel) => {
      bytes += await download(store, rel, inside(stage, rel))
    })
    await loadPackage(stage).catch((err: unknown) => {
      throw new PullError(
        `${source.url}: pulled files fail verification: ${err instanceof Error ? err.message : String(err)}`,
      )
    })

    // Swap: the old copy moves aside first, so a crash in between leaves either version, never a mix.
    const old = join(cacheDir, `.old-${manifest.name}-${randomBytes(4).toString('hex')}`)
    const hadOld = await rename(target, old).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false
        throw err
      },
    )
    await rename(stage, target).catch(async (err: unknown) => {
      if (hadOld) await rename(old, target).catch(() => undefined)
      throw err
    })
    if (hadOld) await rm(old, { recursive: true, force: true })
    return {
      source: source.url,
      name: manifest.name,
      dir: target,
      reused: false,
      files: rels.length,
      bytes,
    }
  } finally {
    await rm(stage, { recursive: true, force: true })
  }
}

/**
 * Pulls every configured source (one after another: each package is downloaded with its own concurrency).
 * @throws PullError when a source fails or two sources carry the same package name
 */
export async function pullPackages(
  config: PullConfig,
  opts: PullOptions = {},
): Promise<PulledPackage[]> {
  const pulled: PulledPackage[] = []
  for (const source of config.sources) {
    const started = performance.now()
    const p = await pullPackage(source, config, opts)
    const clash = pulled.find((q) => q.name === p.name)
    if (clash)
      throw new PullError(`${p.source} and ${clash.source} both hold a package named '${p.name}'`)
    pulled.push(p)
    opts.logger?.info(p.reused ? 'package verified in cache' : 'package pulled', {
      source: p.source,
      name: p.name,
      dir: p.dir,
      files: p.files,
      bytes: p.bytes,
      ms: Math.round(performance.now() - started),
    })
  }
  return pulled
}
