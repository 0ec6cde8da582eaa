/**
 * The repository's import graph as dpdm sees it: every file of every workspace and root folder, type-only imports
 * included, `@twinserve/*` imports resolved through the packages' `exports`. Read by the cycle check
 * (check-cycles.ts) and the package-boundary test (test/contract/package-boundaries.test.ts).
 * @module
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { type DependencyTree, parseDependencyTree } from 'dpdm'

/** Every file that can start an import chain, relative to the repository root. */
export const REPOSITORY_ENTRIES = [
  'shared/src/**/*.ts',
  'gpu-runner/src/**/*.ts',
  'gpu-runner/bin/*.mjs',
  'gpu-runner/test-support/**/*.ts',
  'gateway/src/**/*.ts',
  'gateway/dev/**/*.ts',
  'gateway/test/**/*.ts',
  'gateway/*.ts',
  'infra/**/*.ts',
  'infra/**/*.mjs',
  'zoo/**/*.ts',
  'scripts/**/*.ts',
  'bench/**/*.ts',
  'test/**/*.ts',
  '*.ts',
]

/** Bare specifiers that name no file: Node built-ins and the Workers runtime's modules. */
export function isRuntimeModule(request: string): boolean {
  return /^(node|cloudflare|workerd):/.test(request)
}

/**
 * Files (relative to `root`) → their imports, for the files `entries` match and everything they import. Packages
 * under node_modules appear as leaves.
 */
export async function importGraph(
  root: string,
  entries: readonly string[],
): Promise<DependencyTree> {
  const tsconfig = join(root, 'tsconfig.base.json')
  return parseDependencyTree([...entries], {
    cwd: root,
    context: root,
    // false: type-only imports stay in the graph.
    transform: false,
    exclude: /node_modules|\/\.cache\//,
    // One resolver for every folder (bench/ and scripts/ have no tsconfig of their own): Bundler resolution, so
    // `@twinserve/gpu-runner/build` resolves through the package's exports as TypeScript and tsx see it.
    tsconfig: existsSync(tsconfig) ? tsconfig : undefined,
  })
}
