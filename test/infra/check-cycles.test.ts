/**
 * `npm run check:cycles` (scripts/check-cycles.ts) fails on an import cycle, type-only ones included, and names it:
 * run on tiny generated projects through the real CLI, and its allow-list logic through `findCycles`.
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { findCycles, formatReport } from '../../scripts/check-cycles.ts'
import { REPO } from './manifests.ts'

const run = promisify(execFile)
const dirs: string[] = []
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true })
})

/** Writes `files` (path → source) into a fresh temporary project and returns its root. */
async function project(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'twinserve-cycles-'))
  dirs.push(root)
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true })
    await writeFile(join(root, path), text)
  }
  return root
}

/** The CLI on `root`: exit code and everything it printed. */
async function checkCycles(root: string): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', `${REPO}scripts/check-cycles.ts`, '--root', root, 'src/**/*.ts'],
      { cwd: REPO },
    )
    return { code: 0, out: stdout + stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, out: e.stdout + e.stderr }
  }
}

describe('check:cycles', () => {
  it('fails on a cycle made of type-only imports and names its files', async () => {
    const root = await project({
      'src/order.ts':
        "import type { Customer } from './customer.ts'\nexport type Order = { by: Customer }\n",
      'src/customer.ts':
        "import type { Order } from './order.ts'\nexport type Customer = { orders: Order[] }\n",
      'src/main.ts': "import type { Order } from './order.ts'\nexport const none: Order[] = []\n",
    })
    const { code, out } = await checkCycles(root)
    expect(code).toBe(1)
    expect(out).toMatch(
      /import cycle: src\/(order|customer)\.ts -> src\/(customer|order)\.ts -> src\/\1\.ts/,
    )
    expect(out).toContain('1 cycle(s)')
  }, 30_000)

  it('passes the same project once the shared type has a module of its own', async () => {
    const root = await project({
      'src/types.ts':
        'export type Customer = { orders: Order[] }\nexport type Order = { by: Customer }\n',
      'src/order.ts': "import type { Order } from './types.ts'\nexport const none: Order[] = []\n",
      'src/customer.ts':
        "import type { Customer } from './types.ts'\nexport const nobody: Customer[] = []\n",
    })
    const { code, out } = await checkCycles(root)
    expect(out).toContain('no import cycles in 3 files')
    expect(code).toBe(0)
  }, 30_000)

  it('fails when an import does not resolve (the edge could hide a cycle)', async () => {
    const root = await project({ 'src/a.ts': "export { b } from './missing.ts'\n" })
    const { code, out } = await checkCycles(root)
    expect(code).toBe(1)
    expect(out).toContain(
      'unresolved import (the check cannot follow it): src/a.ts -> ./missing.ts',
    )
  }, 30_000)

  it('tolerates only cycles inside an allow-listed file set, and flags an entry that matches nothing', async () => {
    const root = await project({
      'src/a.ts': "import { b } from './b.ts'\nexport const a = () => b\n",
      'src/b.ts': "import { a } from './a.ts'\nexport const b = () => a\n",
      'src/c.ts': "import { d } from './d.ts'\nexport const c = () => d\n",
      'src/d.ts': "import { c } from './c.ts'\nexport const d = () => c\n",
    })
    const report = await findCycles(
      root,
      ['src/*.ts'],
      [
        { why: 'a and b', files: ['src/a.ts', 'src/b.ts'] },
        { why: 'long gone', files: ['src/x.ts', 'src/y.ts'] },
      ],
    )
    // dpdm lists a cycle from wherever its walk entered it.
    const sorted = (cycles: string[][]) => cycles.map((c) => [...c].sort())
    expect(sorted(report.tolerated)).toEqual([['src/a.ts', 'src/b.ts']])
    expect(sorted(report.cycles)).toEqual([['src/c.ts', 'src/d.ts']])
    expect(report.stale.map((k) => k.why)).toEqual(['long gone'])
    expect(formatReport(report).ok).toBe(false)
  })
})
