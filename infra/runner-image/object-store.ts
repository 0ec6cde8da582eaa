/**
 * GETs of one package's files from where the operator keeps them: an S3-compatible bucket (SigV4 via aws4fetch,
 * the same signing AWS S3, Cloudflare R2 and MinIO accept) or a plain HTTP(S) base URL. Transient failures
 * (network errors, 5xx, 429) are retried with backoff; anything else fails at once with the store's answer.
 * @module
 */
import { AwsClient } from 'aws4fetch'
import { type PackageSource, type PullConfig, PullError } from './pull-config.ts'

export interface ObjectStore {
  /** The object's URL as the operator wrote it (for messages). */
  describe(rel: string): string
  /** A 200 response for `<source>/<rel>`, body unread. @throws PullError */
  get(rel: string): Promise<Response>
}

export interface StoreOptions {
  /** Tries per object (first + retries). */
  attempts?: number
  /** Backoff before retry n is `backoffMs * 2^(n-1)`. */
  backoffMs?: number
}

/** Percent-encodes each path segment (S3 keys are signed in this form). */
function encodePath(path: string): string {
  return path
    .split('/')
    .filter(Boolean)
    .map((s) => encodeURIComponent(s))
    .join('/')
}

function join(prefix: string, rel: string): string {
  return prefix ? `${prefix}/${rel}` : rel
}

export function createObjectStore(
  source: PackageSource,
  config: PullConfig,
  opts: StoreOptions = {},
): ObjectStore {
  const attempts = opts.attempts ?? 4
  const backoffMs = opts.backoffMs ?? 500
  let url: (rel: string) => string
  let send: (url: string) => Promise<Response>
  if (source.kind === 's3') {
    const endpoint = (config.s3Endpoint ?? `https://s3.${config.region}.amazonaws.com`).replace(
      /\/+$/,
      '',
    )
    url = (rel) => `${endpoint}/${encodePath(`${source.bucket}/${join(source.prefix, rel)}`)}`
    if (config.accessKeyId && config.secretAccessKey) {
      const client = new AwsClient({
        accessKeyId: config.accessKeyId,
        secretAccessKey: config.secretAccessKey,
        ...(config.sessionToken ? { sessionToken: config.sessionToken } : {}),
        region: config.region,
        service: 's3',
        // One retry loop, ours (below), for both kinds of store: same attempts, backoff and messages.
        retries: 0,
      })
      send = (u) => client.fetch(u, { method: 'GET' })
    } else send = (u) => fetch(u)
  } else {
    url = (rel) => `${source.base}/${encodePath(rel)}`
    send = (u) => fetch(u)
  }
  const describe = (rel: string) => `${source.url.replace(/\/+$/, '')}/${rel}`

  return {
    describe,
    async get(rel) {
      let last = ''
      for (let attempt = 1; attempt <= attempts; attempt++) {
        if (attempt > 1) await new Promise((r) => setTimeout(r, backoffMs * 2 ** (attempt - 2)))
        let res: Response
        try {
          res = await send(url(rel))
        } catch (err) {
          last =
            err instanceof Error
              ? err.cause instanceof Error
                ? err.cause.message
                : err.message
              : String(err)
          continue
        }
        if (res.ok) return res
        const body = (await res.text().catch(() => '')).slice(0, 300)
        // S3 puts the reason in an XML <Code>; show it rather than the whole document.
        const code = /<Code>([^<]+)<\/Code>/.exec(body)?.[1]
        last = `HTTP ${res.status}${code ? ` ${code}` : body ? `: ${body}` : ''}`
        if (res.status !== 429 && res.status < 500) break
      }
      throw new PullError(`${describe(rel)}: ${last}`)
    },
  }
}
