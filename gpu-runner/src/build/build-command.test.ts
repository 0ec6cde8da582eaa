import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { writeBuildFixture } from '../../test-support/test-models.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-cli-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const bin = resolve(import.meta.dirname, '../../bin/twinserve.mjs')

/** Runs the real `twinserve` entry point (what `npx twinserve` runs) in a child process. */
async function twinserve(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, ...args], {
      env: { ...process.env, CI: '1' },
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
