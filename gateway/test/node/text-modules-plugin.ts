/**
 * A Vite plugin for the gateway's tests: serves Chart.js's browser bundle as a text module, as wrangler does
 * for `wrangler dev`/`deploy` (wrangler.toml [[rules]] type "Text"). vitest-pool-workers applies that rule
 * itself only to files inside the gateway folder; for one in the hoisted node_modules it builds a module path
 * workerd cannot load, so the import is answered here first, as a virtual module with the same default export.
 * @module
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type { Plugin } from 'vite'

const VIRTUAL_ID = '\0twinserve:chart-umd-text'

export function textModulesPlugin(): Plugin {
  return {
    name: 'twinserve-text-modules',
    enforce: 'pre',
    resolveId(source) {
      return source.endsWith('/chart.umd.min.js') ? VIRTUAL_ID : undefined
    },
    load(id) {
      if (id !== VIRTUAL_ID) return undefined
      const cjs = createRequire(import.meta.url).resolve('chart.js')
      const umd = cjs.replace(/chart\.cjs$/, 'chart.umd.min.js')
      return `export default ${JSON.stringify(readFileSync(umd, 'utf8'))}`
    },
  }
}
