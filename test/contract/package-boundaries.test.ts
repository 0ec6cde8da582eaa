/**
 * The package boundaries, read off the real import graph (scripts/import-graph.ts, type-only imports included):
 * other code reaches the runner and the zoo only through their `exports`, bench/ does not lean on the e2e tests,
 * the runner's source does not lean on test support, `shared/` imports only zod, and gateway and runner never
 * import each other. Issue #20, item 5.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { DependencyTree } from 'dpdm'
import { beforeAll, describe, expect, it } from 'vitest'
import { importGraph, isRuntimeModule, REPOSITORY_ENTRIES } from '../../scripts/import-graph.ts'
import { REPO } from '../infra/manifests.ts'

let graph: DependencyTree

/** Every import edge `from → to` (repository-relative files) for which `bad` holds. */
function edges(bad: (from: string, to: string) => boolean): string[] {
  return Object.entries(graph).flatMap(([from, deps]) =>
    (deps ?? []).flatMap((d) => (d.id !== null && bad(from, d.id) ? [`${from} -> ${d.id}`] : [])),
  )
}

/** The files a workspace's package.json `exports` point at (plus its bins), repository-relative. */
function exportTargets(workspace: string): string[] {
  const pkg = JSON.parse(readFileSync(join(REPO, workspace, 'package.json'), 'utf8')) as {
    exports?: Record<string, string>
    bin?: Record<string, string>
  }
  return [...Object.values(pkg.exports ?? {}), ...Object.values(pkg.bin ?? {})].map((t) =>
    join(workspace, t),
  )
}

const inside = (dir: string) => (file: string) => file.startsWith(`${dir}/`)

beforeAll(async () => {
  graph = await importGraph(REPO, REPOSITORY_ENTRIES)
}, 60_000)

describe('package boundaries', () => {
  it('reads the whole repository', () => {
    expect(Object.keys(graph).length).toBeGreaterThan(300)
    expect(Object.keys(graph)).toContain('bench/perf/main.ts')
  })

  it.each(['gpu-runner', 'zoo'])('other code imports %s only through its exports', (ws) => {
    const targets = exportTargets(ws)
    expect(targets.length).toBeGreaterThan(0)
    expect(
      edges((from, to) => !inside(ws)(from) && inside(ws)(to) && !targets.includes(to)),
    ).toEqual([])
  })

  it('and such an import would be caught: an export target is where consumers land', () => {
    const landed = edges((from, to) => inside('bench')(from) && inside('gpu-runner')(to))
    expect(landed).toContain('bench/perf/main.ts -> gpu-runner/src/runtime/index.ts')
  })

  it('bench/ does not import the e2e tests (shared harnesses live in test/support/)', () => {
    expect(edges((from, to) => inside('bench')(from) && inside('test/e2e')(to))).toEqual([])
  })

  it("the runner's and the zoo's source do not import test support, tests or benchmarks", () => {
    const source = (f: string) =>
      (inside('gpu-runner/src')(f) || inside('zoo')(f)) && !f.endsWith('.test.ts')
    const support = (f: string) =>
      ['gpu-runner/test-support', 'test', 'bench'].some((d) => inside(d)(f)) ||
      /\.test\.ts$/.test(f)
    expect(edges((from, to) => source(from) && support(to))).toEqual([])
  })

  it('the runner does not import the zoo (the zoo is built on the runner, not the reverse)', () => {
    expect(edges((from, to) => inside('gpu-runner')(from) && inside('zoo')(to))).toEqual([])
  })

  it('shared/ imports only itself and zod', () => {
    const bad = Object.entries(graph).flatMap(([from, deps]) =>
      inside('shared')(from)
        ? (deps ?? [])
            .filter((d) => !d.request.startsWith('.') && d.request !== 'zod')
            .filter((d) => !(from.endsWith('.test.ts') && d.request === 'vitest'))
            .map((d) => `${from} -> ${d.request}`)
        : [],
    )
    expect(bad).toEqual([])
  })

  it('gateway and runner never import each other', () => {
    const pair = (a: string, b: string) => (from: string, to: string) =>
      inside(a)(from) && inside(b)(to)
    expect(edges(pair('gateway', 'gpu-runner'))).toEqual([])
    expect(edges(pair('gpu-runner', 'gateway'))).toEqual([])
  })

  it('every import resolves (an unresolved one would hide its edge from these checks)', () => {
    const unresolved = Object.entries(graph).flatMap(([from, deps]) =>
      (deps ?? [])
        .filter((d) => d.id === null && !isRuntimeModule(d.request))
        .map((d) => `${from} -> ${d.request}`),
    )
    expect(unresolved).toEqual([])
  })
})
