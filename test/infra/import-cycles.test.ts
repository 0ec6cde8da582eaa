/**
 * No import cycle, type-only imports included (issue #20), from the entry points of the gateway Worker, the shared
 * package and the runner's HTTP server: dpdm walks each graph as TypeScript sees it (`import type` counts, as it
 * does for a reader) and names any cycle it finds.
 */
import { parseCircular, parseDependencyTree, shortenTree } from 'dpdm'
import { describe, expect, it } from 'vitest'
import { REPO } from './manifests.ts'

const ENTRIES = [
  'gateway/src/index.ts',
  'shared/src/index.ts',
  'gpu-runner/src/server/runner.ts',
  'gpu-runner/src/server/openapi-document.ts',
]

describe('import graph', () => {
  it.each(ENTRIES)('%s reaches no import cycle', async (entry) => {
    const tree = await parseDependencyTree(`${REPO}${entry}`, {
      context: REPO,
      // Packages are not ours to untangle; shared/ is walked through its workspace link like any import.
      exclude: /node_modules/,
      tsconfig: `${REPO}tsconfig.base.json`,
      transform: false,
      skipDynamicImports: false,
    })
    const files = Object.keys(tree)
    // The walk really followed the imports (a broken resolution would find nothing, and so no cycle).
    expect(files.length).toBeGreaterThan(10)
    expect(parseCircular(shortenTree(REPO, tree)).map((c) => c.join(' -> '))).toEqual([])
  })
})
