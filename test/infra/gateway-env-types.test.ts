/**
 * The gateway's `Env` (gateway/worker-configuration.d.ts) is what `npm run types:gateway` (`wrangler types`) makes
 * from wrangler.toml and gateway/secret-names.env today: regenerated in a scratch copy of the inputs and compared
 * byte for byte, so a binding, var or secret added on one side and not regenerated fails here.
 */
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO } from './manifests.ts'

const run = promisify(execFile)
const WRANGLER = `${REPO}node_modules/wrangler/bin/wrangler.js`
const TYPES = 'gateway/worker-configuration.d.ts'

/** The arguments of `npm run types:gateway`, read from package.json so this test runs what developers run. */
async function typesArgs(): Promise<string[]> {
  const pkg = JSON.parse(await readFile(`${REPO}package.json`, 'utf8')) as {
    scripts: Record<string, string>
  }
  const [bin, ...args] = (pkg.scripts['types:gateway'] ?? '').split(/\s+/)
  expect(bin).toBe('wrangler')
  expect(args).toContain(TYPES)
  return args
}

describe('gateway Env types', () => {
  let scratch: string
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'twinserve-env-types-'))
  })
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true })
  })

  it(`${TYPES} is fresh: run npm run types:gateway after changing wrangler.toml`, async () => {
    // The same relative layout as the repository, so the generated header and import paths match; the source is
    // linked (wrangler resolves the entry point), never written.
    await mkdir(join(scratch, 'gateway'))
    await copyFile(`${REPO}wrangler.toml`, join(scratch, 'wrangler.toml'))
    await copyFile(`${REPO}gateway/secret-names.env`, join(scratch, 'gateway/secret-names.env'))
    await symlink(`${REPO}gateway/src`, join(scratch, 'gateway/src'))
    await run(process.execPath, [WRANGLER, ...(await typesArgs())], {
      cwd: scratch,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: scratch,
        XDG_CONFIG_HOME: scratch,
        WRANGLER_SEND_METRICS: 'false',
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
      },
    })
    const generated = await readFile(join(scratch, TYPES), 'utf8')
    const committed = await readFile(`${REPO}${TYPES}`, 'utf8')
    expect(committed, `${TYPES} is stale: run npm run types:gateway`).toBe(generated)
  })
})
