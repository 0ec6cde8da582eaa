/**
 * Local gateway state (D1 and Durable Objects under a `--persist-to` folder) with the migrations applied, made once
 * and copied for each e2e gateway. `wrangler d1 migrations apply --local` starts wrangler and a workerd of its own:
 * seconds of CPU per gateway, six times per `npm test`, for state that is the same every time. The copy is keyed by
 * the migration files' bytes and wrangler's version, so a changed migration makes a fresh one.
 * (gateway/dev/local-gateway.test.ts still applies them the documented way, twice, and checks the result.)
 * @module
 */
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { cp, mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { applyLocalMigrations, REPO_ROOT } from '@twinserve/gateway/dev'

const MIGRATIONS = join(REPO_ROOT, 'gateway/migrations')
/** Written last: a folder without it is an interrupted apply, never used. */
const COMPLETE = '.migrations-applied'

function stateKey(): string {
  const h = createHash('sha256')
  const wrangler = createRequire(import.meta.url)('wrangler/package.json') as { version: string }
  h.update(wrangler.version)
  for (const f of readdirSync(MIGRATIONS).sort())
    h.update(f).update(readFileSync(join(MIGRATIONS, f)))
  return h.digest('hex').slice(0, 16)
}

/** The migrated state, applied on first use (by whichever process gets there first). */
async function migratedTemplate(): Promise<string> {
  const dir = join(tmpdir(), `twinserve-d1-migrated-${stateKey()}`)
  if (existsSync(join(dir, COMPLETE))) return dir
  const work = await mkdtemp(`${dir}-`)
  await applyLocalMigrations({ persistTo: work })
  await writeFile(join(work, COMPLETE), '')
  // Another process may have finished first: its copy is the same state, so keep that one.
  await rename(work, dir).catch(() => rm(work, { recursive: true, force: true }))
  return dir
}

/** Fills `persistTo` (an empty folder) with freshly migrated local state. */
export async function migratedState(persistTo: string): Promise<void> {
  await cp(await migratedTemplate(), persistTo, { recursive: true })
}
