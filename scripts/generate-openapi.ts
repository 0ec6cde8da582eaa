/**
 * Writes the API reference: OpenAPI 3.1 documents generated from the shared zod schemas (the objects that validate
 * requests at run time), so the reference cannot drift from what the services accept. Each service builds its own
 * (gateway/src/openapi, gpu-runner/src/server/openapi-document.ts); this script writes them.
 *
 *   docs/api/openapi.json         the gateway: what clients and admins call (the same document it serves at
 *                                 GET /openapi.json)
 *   docs/api/runner-openapi.json  a GPU runner: what the gateway calls, signed (and what a runner serves with
 *                                 --insecure-local on a workstation)
 *
 *   npm run docs:openapi             regenerate (atomically: temp file, then rename)
 *   npm run docs:openapi -- --check  exit 1 if a committed document is stale (test/infra/openapi.test.ts runs it)
 * @module
 */
import { readFile, rename, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { buildRunnerOpenApiDocument } from '@twinserve/gpu-runner/server'
import type { Json } from '@twinserve/shared'

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const VERSION = (JSON.parse(await readFile(`${ROOT}package.json`, 'utf8')) as { version: string })
  .version

/**
 * The gateway's document builder (gateway/src/openapi). Its module graph reaches gateway code typed for workerd
 * (this script typechecks with Node's types), so it is loaded by path at run time; it runs in Node as is.
 */
const { buildOpenApiDocument } = (await import(
  `${ROOT}gateway/src/openapi/openapi-document.ts`
)) as { buildOpenApiDocument: (version: string) => Json }

/** File (relative to the repository root) → its generated text. */
export function buildApiDocs(): Record<string, string> {
  const text = (doc: Json) => `${JSON.stringify(doc, null, 2)}\n`
  return {
    'docs/api/openapi.json': text(buildOpenApiDocument(VERSION)),
    'docs/api/runner-openapi.json': text(buildRunnerOpenApiDocument(VERSION)),
  }
}

async function main(args: string[]): Promise<number> {
  const check = args.includes('--check')
  let stale = 0
  for (const [rel, text] of Object.entries(buildApiDocs())) {
    const path = `${ROOT}${rel}`
    const current = await readFile(path, 'utf8').catch(() => undefined)
    if (current === text) continue
    if (check) {
      process.stderr.write(`${rel} is stale: run npm run docs:openapi\n`)
      stale++
      continue
    }
    await writeFile(`${path}.tmp`, text)
    await rename(`${path}.tmp`, path)
    process.stdout.write(`wrote ${rel}\n`)
  }
  return stale ? 1 : 0
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1])
  process.exitCode = await main(process.argv.slice(2))
