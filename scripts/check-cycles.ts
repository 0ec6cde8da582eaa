/**
 * `npm run check:cycles` (part of `npm test`): no import cycle anywhere in the repository, type-only imports
 * included (a type-only cycle still ties two modules together: neither can move or be read alone). dpdm walks every
 * TypeScript file of every workspace and the root folders (shared, gpu-runner with its bin and test support,
 * gateway, infra, zoo, scripts, bench, test), resolving `@twinserve/*` imports through the packages' `exports`.
 *
 *   npm run check:cycles                                      # the repository; exits 1 naming each cycle
 *   node --import tsx scripts/check-cycles.ts --root DIR GLOB…  # another tree or other files, no allow-list
 *
 * An import that does not resolve fails the check too: an edge dpdm cannot follow could hide a cycle.
 * @module
 */
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { type DependencyTree, parseCircular } from 'dpdm'
import { importGraph, isRuntimeModule, REPOSITORY_ENTRIES } from './import-graph.ts'

/** A cycle tolerated for now, named by the set of files it runs through. */
export interface KnownCycle {
  why: string
  files: readonly string[]
}

/**
 * Cycles that exist on main while the branches removing them are in flight. A cycle is tolerated only when every
 * file in it belongs to one entry's set. Delete each entry when its fix merges: an entry that matches no cycle
 * fails the check, so a stale one cannot linger.
 */
export const KNOWN_CYCLES: readonly KnownCycle[] = []

export interface CycleReport {
  /** Files analysed. */
  files: number
  /** Cycles no allow-list entry covers, each as the files in import order. */
  cycles: string[][]
  /** Cycles an allow-list entry covers. */
  tolerated: string[][]
  /** Allow-list entries that cover no cycle any more. */
  stale: KnownCycle[]
  /** Imports of relative paths or workspace packages that did not resolve: `issuer -> request`. */
  unresolved: string[]
}

function unresolvedImports(tree: DependencyTree): string[] {
  return Object.entries(tree).flatMap(([issuer, deps]) =>
    (deps ?? [])
      .filter((d) => d.id === null && !isRuntimeModule(d.request))
      .map((d) => `${issuer} -> ${d.request}`),
  )
}

/** Finds the import cycles among the files `entries` match under `root` (and everything they import). */
export async function findCycles(
  root: string,
  entries: readonly string[],
  allow: readonly KnownCycle[] = [],
): Promise<CycleReport> {
  const tree = await importGraph(root, entries)
  const all = parseCircular(tree)
  const covers = (k: KnownCycle, cycle: string[]) => cycle.every((f) => k.files.includes(f))
  return {
    files: Object.keys(tree).length,
    cycles: all.filter((c) => !allow.some((k) => covers(k, c))),
    tolerated: all.filter((c) => allow.some((k) => covers(k, c))),
    stale: allow.filter((k) => !all.some((c) => covers(k, c))),
    unresolved: unresolvedImports(tree),
  }
}

const chain = (cycle: readonly string[]) => [...cycle, cycle[0]].join(' -> ')

/** The report as lines for a terminal, and whether the check passes. */
export function formatReport(r: CycleReport): { ok: boolean; lines: string[] } {
  const lines: string[] = []
  for (const c of r.cycles) lines.push(`import cycle: ${chain(c)}`)
  for (const u of r.unresolved) lines.push(`unresolved import (the check cannot follow it): ${u}`)
  for (const k of r.stale)
    lines.push(`allow-listed cycle is gone, delete its KNOWN_CYCLES entry: ${k.why}`)
  for (const c of r.tolerated) lines.push(`tolerated (KNOWN_CYCLES): ${chain(c)}`)
  if (r.files === 0) lines.push('no files matched: nothing was checked')
  const ok =
    r.files > 0 && r.cycles.length === 0 && r.unresolved.length === 0 && r.stale.length === 0
  lines.push(
    ok
      ? `no import cycles in ${r.files} files${r.tolerated.length > 0 ? ` besides the ${r.tolerated.length} KNOWN_CYCLES tolerates` : ''}`
      : `check:cycles failed: ${r.cycles.length} cycle(s), ${r.unresolved.length} unresolved import(s), ${r.stale.length} stale allow-list entr${r.stale.length === 1 ? 'y' : 'ies'} in ${r.files} files`,
  )
  return { ok, lines }
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { root: { type: 'string' } },
    allowPositionals: true,
  })
  const repository = values.root === undefined && positionals.length === 0
  const report = await findCycles(
    resolve(values.root ?? join(import.meta.dirname, '..')),
    positionals.length > 0 ? positionals : REPOSITORY_ENTRIES,
    repository ? KNOWN_CYCLES : [],
  )
  const { ok, lines } = formatReport(report)
  for (const line of lines) (ok ? console.log : console.error)(line)
  return ok ? 0 : 1
}

if (process.argv[1] === import.meta.filename) process.exitCode = await main()
