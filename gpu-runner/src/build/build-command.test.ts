import { execFile, execFileSync } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { writeBuildFixture } from '../../test-support/test-models.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-cli-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const bin = resolve(import.meta.dirname, '../../bin/twinserve.mjs')

/** Runs the real `twinserve` entry point (what `npx twinserve` runs) in a child process, as `uid` if given. */
async function twinserve(
  args: string[],
  uid?: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      env: { ...process.env, CI: '1' },
      ...(uid === undefined ? {} : { uid, gid: uid }),
    })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

describe('twinserve build (CLI)', () => {
  it('builds and verifies a package, printing the table; progress lines go to stderr', async () => {
    const fx = await writeBuildFixture(join(root, 'ok'), { recipe: { variants: [] } })
    const out = join(root, 'ok-pkg')
    const r = await twinserve([
      'build',
      fx.recipePath,
      '--out',
      out,
      '--json',
      join(root, 'report.json'),
    ])
    expect(r.stderr).toMatch(/verification: done in/)
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/\| fc2.weight +\| matrix \| \[16, 12\] \| 2 × 3/)
    expect(r.stdout).toMatch(/all-zero weights vs shared variant \| 0 /)
    expect(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')).name).toBe('test-mlp')
    const report = JSON.parse(await readFile(join(root, 'report.json'), 'utf8'))
    expect(report.verification.zeroWeightsMaxAbsDiff).toBe(0)
  })

  it('exits 2 with usage on a bad command line, 1 with the reason on a failed build', async () => {
    const [missingOut, twoRecipes, bogus, help, failed] = await Promise.all([
      twinserve(['build', 'recipe.yaml']),
      twinserve(['build', 'a.yaml', 'b.yaml', '--out', 'x']),
      twinserve(['build', '--bogus']),
      twinserve(['build', '--help']),
      twinserve(['build', join(root, 'nope.yaml'), '--out', join(root, 'never')]),
    ])
    expect(missingOut.code).toBe(2)
    expect(missingOut.stderr).toMatch(/--out <dir> is required[\s\S]*usage: twinserve build/)
    expect(twoRecipes.code).toBe(2)
    expect(bogus.code).toBe(2)
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/usage: twinserve build/)
    expect(failed.code).toBe(1)
    expect(failed.stderr).toMatch(
      /twinserve build: recipe .*nope.yaml: file not found \[INVALID_REQUEST\]/,
    )
    expect((await readdir(root)).includes('never')).toBe(false)
  })
})

/** A tmpfs mounted at `dir` (root only: tests that need a real read-only or full filesystem skip elsewhere). */
function tryMount(dir: string, options: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

// Issue #16, case 7: these printed "unexpected error" with a stack trace, and EROFS was reported as ENOENT.
describe('twinserve build: operating-system errors in words', async () => {
  const fx = await writeBuildFixture(join(root, 'os'), { recipe: { variants: [] } })
  const readOnly = join(root, 'read-only')
  const tiny = join(root, 'tiny')
  await mkdir(readOnly)
  await mkdir(tiny)
  const mounted = { readOnly: tryMount(readOnly, 'ro,size=1m'), tiny: tryMount(tiny, 'size=8k') }
  afterAll(() => {
    for (const dir of [readOnly, tiny])
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' })
      } catch {
        // not mounted
      }
  })
  const expectClear = (r: { code: number; stderr: string }, message: RegExp) => {
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(message)
    expect(r.stderr).not.toMatch(/unexpected error|\n\s+at /)
  }

  it.skipIf(!mounted.readOnly)('a read-only filesystem is EROFS, not ENOENT', async () => {
    for (const out of [join(readOnly, 'pkg'), join(readOnly, 'sub', 'pkg')]) {
      const r = await twinserve(['build', fx.recipePath, '--out', out, '--quiet'])
      expectClear(
        r,
        /twinserve build: cannot create the directory .*: the filesystem is read-only \(EROFS\)/,
      )
    }
  })

  it.skipIf(!mounted.tiny)('a full disk is ENOSPC, and nothing is left behind', async () => {
    const r = await twinserve(['build', fx.recipePath, '--out', join(tiny, 'pkg'), '--quiet'])
    expectClear(r, /: no space left on the device \(ENOSPC\)/)
    expect(await readdir(tiny)).toEqual([])
  })

  it('a directory the user may not write is EACCES', async () => {
    const locked = join(root, 'locked')
    await mkdir(locked)
    await chmod(locked, 0o555)
    // root writes anywhere: run the build as `nobody` then, with the fixture readable to it.
    const asRoot = process.getuid?.() === 0
    if (asRoot) await chmod(root, 0o755)
    const r = await twinserve(
      ['build', fx.recipePath, '--out', join(locked, 'pkg'), '--quiet'],
      asRoot ? 65534 : undefined,
    )
    expectClear(r, /cannot create the directory .*locked.*: permission denied \(EACCES\)/)
  })
})
