/**
 * The API reference in docs/api is what the generator makes from the shared schemas today (regenerate with
 * `npm run docs:openapi`). That each document names exactly its service's routes is tested beside the builders:
 * gateway/test/operations.workers.test.ts and gpu-runner/src/server/openapi-document.test.ts.
 */
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { buildApiDocs } from '../../scripts/generate-openapi.ts'
import { REPO } from './manifests.ts'

const run = promisify(execFile)

describe('docs/api', () => {
  it('is fresh: every committed document equals the generated one', async () => {
    for (const [rel, text] of Object.entries(buildApiDocs())) {
      const committed = await readFile(`${REPO}${rel}`, 'utf8').catch(() => '(missing)')
      // Compared parsed first for a readable diff, then byte for byte.
      expect(JSON.parse(committed), `${rel} is stale: run npm run docs:openapi`).toEqual(
        JSON.parse(text),
      )
      expect(committed, `${rel} is stale: run npm run docs:openapi`).toBe(text)
    }
  })

  it('npm run docs:openapi -- --check agrees (exit 0, nothing written)', async () => {
    const { stdout, stderr } = await run(
      process.execPath,
      ['--import', 'tsx', 'scripts/generate-openapi.ts', '--check'],
      { cwd: REPO },
    )
    expect(stdout).toBe('')
    expect(stderr).toBe('')
  })

  it('both documents are OpenAPI 3.1 whose every $ref resolves', () => {
    for (const [rel, text] of Object.entries(buildApiDocs())) {
      const doc = JSON.parse(text) as {
        openapi: string
        components: { schemas: Record<string, unknown> }
      }
      expect(doc.openapi, rel).toBe('3.1.0')
      const refs = [...text.matchAll(/"\$ref": "#\/components\/schemas\/([^"]+)"/g)].map(
        (m) => m[1] ?? '',
      )
      expect(refs.length, rel).toBeGreaterThan(5)
      for (const id of refs)
        expect(doc.components.schemas, `${rel}: $ref ${id}`).toHaveProperty([id])
    }
  })
})
