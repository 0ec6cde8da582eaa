/**
 * Rewrites one generated section of bench/RESULTS.md in place: the text between `<!-- <name>:start -->` and
 * `<!-- <name>:end -->`, or a new block appended at the end when the markers are absent. Every benchmark that
 * records results goes through here.
 *
 * - The file is re-read right before writing (other benchmarks write their own sections of the same file) and
 *   written to a temporary file that is renamed, so a reader never sees half of it.
 * - The file is then formatted by the repository's own formatter (`biome format`), because the suite lints
 *   RESULTS.md: a generated table comes out unpadded, and a fresh clone's `npm test` failed on exactly that.
 *   A formatter that cannot run is reported, not fatal: the numbers are written either way.
 * @module
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile, rename, writeFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const BIOME = join(REPO, 'node_modules/@biomejs/biome/bin/biome')

export async function writeSection(path: string, name: string, body: string): Promise<void> {
  const start = `<!-- ${name}:start -->`
  const end = `<!-- ${name}:end -->`
  const block = `${start}\n${body.trim()}\n${end}`
  const current = await readFile(path, 'utf8').catch(() => '# Benchmark results\n')
  const a = current.indexOf(start)
  const b = current.indexOf(end)
  const next =
    a >= 0 && b > a
      ? `${current.slice(0, a)}${block}${current.slice(b + end.length)}`
      : `${current.trimEnd()}\n\n${block}\n`
  const tmp = `${path}.tmp-${process.pid}`
  await writeFile(tmp, next)
  await rename(tmp, path)
  formatMarkdown(path)
}

/** `biome format --write <path>` with the repository's configuration; a failure is logged, not thrown. */
function formatMarkdown(path: string): void {
  if (!existsSync(BIOME)) {
    console.warn(
      `results: ${path} written unformatted (no biome at ${BIOME}); run \`npx biome format --write ${path}\``,
    )
    return
  }
  const run = spawnSync(process.execPath, [BIOME, 'format', '--write', resolve(path)], {
    cwd: REPO,
    encoding: 'utf8',
  })
  if (run.status !== 0)
    console.warn(
      `results: biome could not format ${path} (exit ${run.status}): ${(run.stderr || run.stdout).trim()}`,
    )
}
