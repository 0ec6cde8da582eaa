/**
 * Where a hot load may read a package from, and whether it fits: the repository extension's load names a directory
 * on the runner's disk, so it is confined to `--repository-root` (after symlinks are resolved), and the memory the
 * new version needs is estimated from its files before a byte of it is loaded.
 * @module
 */
import { realpath, stat } from 'node:fs/promises'
import { freemem } from 'node:os'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'
import { AppError, type PackageManifest } from '@twinserve/shared'
import { isKvDecoder } from '../generate/decoder-as-served.ts'
import { BAKED_MIXES, MERGED_MIXES_KEPT } from '../generate/merged-mixes.ts'

const MIB = 1024 * 1024

/**
 * What a loaded version holds, per byte of package on disk and per session (the twin graph, each static variant and,
 * for a package that routes by the prompt's likelihood, its likelihood graph, each in a thread of its own): set above what the zoo packages' loads grow a runner's resident set by
 * (`npm run bench:load-memory`, bench/RESULTS.md "Memory of a hot load"), so the check errs towards refusing.
 */
export const MEMORY_PER_PACKAGE_BYTE = 5
export const MEMORY_PER_SESSION_BYTES = 8 * MIB

/**
 * The package directory a load names, resolved inside the repository root.
 * @param root `--repository-root`; undefined: hot loading is off
 * @param location relative to the root, or absolute inside it
 * @throws AppError FORBIDDEN when loading is off or the directory (symlinks resolved) lies outside the root,
 * NOT_FOUND when it does not exist
 */
export async function resolvePackageDir(
  root: string | undefined,
  location: string,
): Promise<string> {
  if (root === undefined)
    throw new AppError(
      'FORBIDDEN',
      'hot loading is off on this runner: start it with --repository-root <dir> to load packages from <dir>',
    )
  const rootReal = await realpath(root)
  let dir: string
  try {
    dir = await realpath(resolve(rootReal, location))
  } catch {
    throw new AppError(
      'NOT_FOUND',
      `package '${location}' does not exist under the repository root (${root})`,
    )
  }
  const rel = relative(rootReal, dir)
  if (rel.split(sep)[0] === '..' || isAbsolute(rel))
    throw new AppError(
      'FORBIDDEN',
      `package '${location}' is outside the repository root (${root}); only packages under it can be loaded`,
    )
  if (!(await stat(dir)).isDirectory())
    throw new AppError('INVALID_REQUEST', `package '${location}' is not a directory`)
  return dir
}

/**
 * Estimated bytes of memory a package takes once loaded (constants above). A package that routes by the prompt's
 * likelihood also opens its likelihood graph (generate/likelihood-graph.ts, grouped by grouped-likelihood-graph.ts),
 * a second session holding a copy of the twin graph's weights: one more session and the graph's bytes once more
 * (`npm run bench:load-memory`), unless the loader skips it (`likelihoodSession: false`: the runner opens it only for
 * the models it generates with). A KV-cache decoder counts its twin graph once more (below), and, where its merged
 * decode graph opens (`mergedSessions`, the same models), two more sessions and the float32 bytes of its corrected
 * matrices 4·(T + 1) + 2·MERGED_MIXES_KEPT times: the merge session holds each expert's whole correction and the base
 * matrices (T + 1 times; counted four times, since onnxruntime folds them at load beside the float32 factors they
 * come from and its arena keeps that peak: zoo/lm's generating load grew by 144–234 MiB over four runs against
 * 80–134 MiB without it, `npm run bench:load-memory` and scratch runs, 2026-12-06), and the engine keeps that many
 * mixes' merged matrices, in shared memory and in the decode session's
 * thread (generate/merged-decode-graph.ts, runtime/threaded-session.ts `keep`). The engine may also open
 * `bakedMixes` (`--baked-mixes`, default BAKED_MIXES) sessions with a hot mix baked in (generate/baked-mix-graph.ts),
 * each counted as a session and 5 times the matrices' bytes: its initializers, onnxruntime's prepacked copies, and
 * the graph's bytes while it opens (23 MiB on zoo/lm, against 7.5–8.4 MiB measured per session in threads of their
 * own by `npm run bench:load-memory`'s baked row; a scratch probe opening eight at once saw 20.9 MiB each).
 */
export async function estimateLoadedBytes(
  dir: string,
  manifest: Pick<
    PackageManifest,
    'files' | 'variants' | 'router' | 'model' | 'inputs' | 'exclusive' | 'experts'
  >,
  opts: { likelihoodSession?: boolean; mergedSessions?: boolean; bakedMixes?: number } = {},
): Promise<number> {
  const baked = opts.bakedMixes ?? BAKED_MIXES
  const likelihood =
    manifest.router.promptLikelihood !== undefined && (opts.likelihoodSession ?? true)
  const merged = isKvDecoder(manifest) && (opts.mergedSessions ?? true)
  const matrixBytes = merged
    ? manifest.exclusive
        .filter((e) => e.kind === 'matrix')
        .reduce((a, e) => a + 4 * e.shape.reduce((x, y) => x * y, 1), 0)
    : 0
  const sessions = 1 + manifest.variants.length + (likelihood ? 1 : 0) + (merged ? 2 + baked : 0)
  const modelBytes = await fileBytes(join(dir, manifest.model.file))
  // A KV-cache decoder counts its twin graph once more: with the decode graph (generate/decode-graph.ts) beside the
  // graph as served at load, zoo/lm's load grew by 14–51 MiB in one session and 44–117 MiB generating over repeated
  // `npm run bench:load-memory` runs (2026-12-06, third session), past the estimates without it (44.8 / 89.6 MiB).
  const copies = (likelihood ? 1 : 0) + (isKvDecoder(manifest) ? 1 : 0)
  return (
    ((await packageBytes(dir, manifest)) + copies * modelBytes) * MEMORY_PER_PACKAGE_BYTE +
    sessions * MEMORY_PER_SESSION_BYTES +
    (4 * (manifest.experts.length + 1) + 2 * MERGED_MIXES_KEPT + 5 * baked) * matrixBytes
  )
}

const fileBytes = (path: string): Promise<number> =>
  stat(path).then(
    (s) => s.size,
    () => 0,
  )

/** Bytes of the files a manifest lists, as they are on disk (a missing file counts 0: the load reports it). */
export async function packageBytes(
  dir: string,
  manifest: Pick<PackageManifest, 'files'>,
): Promise<number> {
  let total = 0
  for (const rel of Object.keys(manifest.files))
    total += await stat(join(dir, rel)).then(
      (s) => s.size,
      () => 0,
    )
  return total
}

/**
 * Refuses a load whose estimate does not fit: within `limitMb` beside the versions already held, when a limit is
 * set, and within the memory the OS has available either way.
 * @param heldBytes estimates of every version loaded now (the old one stays until its requests finish)
 * @throws AppError INSUFFICIENT_MEMORY naming the numbers
 */
export function checkMemoryFits(
  what: string,
  neededBytes: number,
  heldBytes: number,
  limitMb: number | undefined,
  available: () => number = freemem,
): void {
  const mb = (b: number) => Math.ceil(b / MIB)
  if (limitMb !== undefined && heldBytes + neededBytes > limitMb * MIB)
    throw new AppError(
      'INSUFFICIENT_MEMORY',
      `${what} needs about ${mb(neededBytes)} MiB; the versions loaded hold about ${mb(heldBytes)} MiB of the runner's --memory-limit-mb ${limitMb}. Unload a model first, or raise the limit`,
    )
  const free = available()
  if (neededBytes > free)
    throw new AppError(
      'INSUFFICIENT_MEMORY',
      `${what} needs about ${mb(neededBytes)} MiB; the machine has ${mb(free)} MiB available`,
    )
}
