/**
 * Every wrangler environment builds and binds what the gateway expects: `wrangler deploy --dry-run --env <e>`
 * (offline: it bundles and checks the config without contacting Cloudflare) for the local top level, staging and
 * production; each binds the D1 database and Durable Objects the gateway's `Bindings` declare, exports their
 * classes, inherits the migrations, and sets only vars that the gateway's own config schema parses, never a
 * secret. Binding names are read from gateway/src/env.ts, so a rename on either side fails here.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { unstable_readConfig } from 'wrangler'
import type { z } from 'zod'
import { REPO } from './manifests.ts'

/**
 * The gateway's own config schema. The gateway package exports only ./dev, and its source typechecks only against
 * Workers types, so it is loaded by path at run time (vitest resolves it) rather than pulled into test/'s tsc.
 */
const GATEWAY_CONFIG = `${REPO}gateway/src/config.ts`
const { GatewayConfigSchema } = (await import(GATEWAY_CONFIG)) as {
  GatewayConfigSchema: z.ZodObject<z.ZodRawShape>
}

const run = promisify(execFile)
const WRANGLER = `${REPO}node_modules/wrangler/bin/wrangler.js`
const CONFIG = `${REPO}wrangler.toml`
/** undefined = the top level (local: wrangler dev and the tests). */
const ENVIRONMENTS = [undefined, 'staging', 'production'] as const

/** The parts of wrangler's resolved config read here (its own type names them loosely). */
interface EnvConfig {
  name?: string
  vars: Record<string, unknown>
  d1_databases: {
    binding: string
    database_name?: string
    database_id?: string
    migrations_dir?: string
  }[]
  durable_objects: { bindings: { name: string; class_name: string }[] }
  migrations: { tag: string; new_sqlite_classes?: string[]; new_classes?: string[] }[]
}
const readConfig = (env: string | undefined) =>
  unstable_readConfig({ config: CONFIG, env }, {}) as unknown as EnvConfig

/** The gateway's Bindings interface, by kind, read from its source. */
async function gatewayBindings() {
  const src = await readFile(`${REPO}gateway/src/env.ts`, 'utf8')
  const body = /export interface Bindings \{([\s\S]*?)\n\}/.exec(src)?.[1] ?? ''
  const members = [
    ...body.matchAll(/(?:\/\*\*([^*]*(?:\*(?!\/)[^*]*)*)\*\/\s*)?\n\s*([A-Z_]+)\??:\s*([^\n]+)/g),
  ]
  const of = (pred: (type: string, doc: string) => boolean) =>
    members.filter((m) => pred(m[3] ?? '', m[1] ?? '')).map((m) => m[2] ?? '')
  return {
    d1: of((t) => t.startsWith('D1Database')),
    durableObjects: of((t) => t.startsWith('DurableObjectNamespace')),
    secrets: of((t, doc) => t.startsWith('string') && /^\s*Secret:/.test(doc)),
  }
}

describe('wrangler environments', () => {
  let outRoot: string
  beforeAll(async () => {
    outRoot = await mkdtemp(join(tmpdir(), 'twinserve-wrangler-'))
  })
  afterAll(async () => {
    await rm(outRoot, { recursive: true, force: true })
  })

  it('the gateway declares the bindings these checks look for', async () => {
    const b = await gatewayBindings()
    expect(b.d1).toEqual(['DB'])
    expect(b.durableObjects.sort()).toEqual([
      'EXPERIMENT_BANDIT',
      'RATE_LIMITER',
      'RUNNER_REGISTRY',
    ])
    expect(b.secrets.sort()).toEqual(['ADMIN_BOOTSTRAP_SECRET', 'RUNNER_SIGNING_SECRET'])
  })

  it.each(ENVIRONMENTS)(
    'env %s: deploy --dry-run bundles, binds and exports what the gateway needs',
    async (env) => {
      const outdir = join(outRoot, env ?? 'local')
      const { stdout } = await run(
        process.execPath,
        [
          WRANGLER,
          'deploy',
          '--dry-run',
          '--config',
          CONFIG,
          ...(env ? ['--env', env] : []),
          '--outdir',
          outdir,
        ],
        {
          cwd: REPO,
          env: {
            PATH: process.env.PATH ?? '',
            HOME: outRoot,
            XDG_CONFIG_HOME: outRoot,
            WRANGLER_SEND_METRICS: 'false',
            CLOUDFLARE_CF_FETCH_ENABLED: 'false',
          },
        },
      )
      expect(stdout).toContain('--dry-run: exiting now.')
      const b = await gatewayBindings()
      const config = readConfig(env)
      for (const name of b.d1)
        expect(stdout).toMatch(new RegExp(`env\\.${name} \\(.+\\)\\s+D1 Database`))
      for (const name of b.durableObjects)
        expect(stdout).toMatch(new RegExp(`env\\.${name} \\(\\w+\\)\\s+Durable Object`))

      expect(config.d1_databases.map((d) => d.binding)).toEqual(b.d1)
      expect(config.d1_databases.every((d) => d.migrations_dir === 'gateway/migrations')).toBe(true)
      const classes = config.durable_objects.bindings.map((d) => d.class_name)
      expect(config.durable_objects.bindings.map((d) => d.name).sort()).toEqual(
        b.durableObjects.sort(),
      )
      // Each bound class is exported by the bundle that would be uploaded, and created by an inherited migration.
      const bundle = await readFile(join(outdir, 'index.js'), 'utf8')
      const exported = /export\s*\{([^}]*)\}\s*;?\s*(\/\/[^\n]*\s*)*$/.exec(bundle)?.[1] ?? ''
      for (const cls of classes) expect(exported).toMatch(new RegExp(`\\b${cls}\\b`))
      const migrated = config.migrations.flatMap((m) => [
        ...(m.new_sqlite_classes ?? []),
        ...(m.new_classes ?? []),
      ])
      for (const cls of classes) expect(migrated).toContain(cls)

      // Vars: only names the gateway reads, values it accepts, and never a secret.
      const vars = config.vars as Record<string, string>
      const known = Object.keys(GatewayConfigSchema.shape)
      for (const name of Object.keys(vars)) expect(known, `var ${name}`).toContain(name)
      for (const secret of b.secrets) expect(Object.keys(vars)).not.toContain(secret)
      expect(GatewayConfigSchema.safeParse(vars).success).toBe(true)
    },
  )

  it('deployed environments are separate Workers with their own databases, and the secrets are documented', async () => {
    const configs = ENVIRONMENTS.map((env) => readConfig(env))
    expect(new Set(configs.map((c) => c.name)).size).toBe(ENVIRONMENTS.length)
    const dbs = configs.map((c) => c.d1_databases[0])
    expect(new Set(dbs.map((d) => d?.database_name)).size).toBe(ENVIRONMENTS.length)
    expect(new Set(dbs.map((d) => d?.database_id)).size).toBe(ENVIRONMENTS.length)
    const toml = await readFile(CONFIG, 'utf8')
    const deploy = await readFile(`${REPO}docs/deploy.md`, 'utf8')
    for (const secret of (await gatewayBindings()).secrets) {
      expect(toml).toContain(`wrangler secret put ${secret} --env <env>`)
      for (const env of ['staging', 'production'])
        expect(deploy).toContain(`npx wrangler secret put ${secret} --env ${env}`)
    }
  })
})
