/**
 * Configuration of the runner image's package pull (environment only: it runs before the runner, from the
 * image's entrypoint). `PULL_ENV` is the complete list of variables it reads; the Kubernetes manifests set exactly
 * these plus the runner's own `RUNNER_ENV` (infra's tests compare them).
 * @module
 */
import { z } from 'zod'

/** Config key → environment variable. */
export const PULL_OPTIONS = {
  sources: 'PACKAGE_SOURCES',
  cacheDir: 'PACKAGE_CACHE_DIR',
  s3Endpoint: 'S3_ENDPOINT',
  region: 'AWS_REGION',
  accessKeyId: 'AWS_ACCESS_KEY_ID',
  secretAccessKey: 'AWS_SECRET_ACCESS_KEY',
  sessionToken: 'AWS_SESSION_TOKEN',
} as const

/** Every environment variable the pull reads. */
export const PULL_ENV: readonly string[] = Object.values(PULL_OPTIONS)

/** Where pulled packages go when PACKAGE_CACHE_DIR is not set (the image declares it a volume). */
export const DEFAULT_CACHE_DIR = '/var/lib/twinserve/packages'

/**
 * One package source: the "directory" URL holding `manifest.json` and the files it lists.
 * - `s3://<bucket>/<prefix>`: an S3-compatible store (AWS S3, Cloudflare R2, MinIO …) at S3_ENDPOINT, path-style,
 *   signed with SigV4 when credentials are set (anonymous otherwise, for public buckets);
 * - `https://…/<prefix>` (or `http://` inside a cluster): plain GETs, e.g. a public bucket or a CDN.
 */
export type PackageSource =
  | { kind: 's3'; url: string; bucket: string; prefix: string }
  | { kind: 'http'; url: string; base: string }

const SourceSchema = z.string().transform((raw, ctx): PackageSource => {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    ctx.addIssue({
      code: 'custom',
      message: `'${raw}' is not a URL (s3://bucket/prefix or https://…)`,
    })
    return z.NEVER
  }
  const prefix = u.pathname.replace(/^\/+|\/+$/g, '')
  if (u.protocol === 's3:') {
    if (!u.hostname) {
      ctx.addIssue({ code: 'custom', message: `'${raw}' names no bucket (s3://bucket/prefix)` })
      return z.NEVER
    }
    return { kind: 's3', url: raw, bucket: u.hostname, prefix }
  }
  if (u.protocol === 'https:' || u.protocol === 'http:') {
    if (u.search || u.hash) {
      ctx.addIssue({
        code: 'custom',
        message: `'${raw}': a package URL takes no query or fragment`,
      })
      return z.NEVER
    }
    return { kind: 'http', url: raw, base: `${u.origin}${prefix ? `/${prefix}` : ''}` }
  }
  ctx.addIssue({
    code: 'custom',
    message: `'${raw}': unsupported scheme ${u.protocol} (use s3:// or https://)`,
  })
  return z.NEVER
})

export const PullConfigSchema = z
  .strictObject({
    sources: z.array(SourceSchema).min(1, 'no package sources (comma-separated URLs)'),
    cacheDir: z.string().min(1).default(DEFAULT_CACHE_DIR),
    s3Endpoint: z.url({ protocol: /^https?$/, error: 'must be an http(s):// URL' }).optional(),
    region: z.string().min(1).default('us-east-1'),
    accessKeyId: z.string().min(1).optional(),
    secretAccessKey: z.string().min(1).optional(),
    sessionToken: z.string().min(1).optional(),
  })
  .superRefine((c, ctx) => {
    if (Boolean(c.accessKeyId) !== Boolean(c.secretAccessKey))
      ctx.addIssue({
        code: 'custom',
        path: ['secretAccessKey'],
        message: 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set together or not at all',
      })
  })
export type PullConfig = z.output<typeof PullConfigSchema>

/** Thrown for a bad variable or a failed pull; the message names the variable, source or file. */
export class PullError extends Error {
  override readonly name = 'PullError'
}

/**
 * Reads the pull configuration from the environment.
 * @throws PullError naming the offending variable
 */
export function parsePullEnv(env: Readonly<Record<string, string | undefined>>): PullConfig {
  const raw: Record<string, unknown> = {}
  for (const [key, name] of Object.entries(PULL_OPTIONS)) {
    const value = env[name]?.trim()
    if (value) raw[key] = value
  }
  raw.sources = String(raw.sources ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const parsed = PullConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const messages = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? '') as keyof typeof PULL_OPTIONS
      return `${PULL_OPTIONS[key] ?? key}: ${i.message}`
    })
    throw new PullError(messages.join('; '))
  }
  return parsed.data
}
