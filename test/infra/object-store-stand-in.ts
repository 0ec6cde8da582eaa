/**
 * A stand-in for S3-compatible object storage (outside the system, so a stand-in is fair): a real HTTP server on
 * 127.0.0.1 serving `/<bucket>/<key>` from a directory, path-style, that demands a valid SigV4 signature when
 * credentials are configured (verified by sigv4-verify.ts, not by the client's library) and answers errors as S3
 * does (XML `<Code>`). Faults can be injected per key: a number of 503s, or a body cut short.
 * @module
 */
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, resolve, sep } from 'node:path'
import { type Credentials, verifySigV4 } from './sigv4-verify.ts'

export interface ObjectStoreStandIn {
  /** http://127.0.0.1:<port> */
  url: string
  /** Keys requested, in order, as `<bucket>/<key>`. */
  requests: string[]
  /** The next `n` GETs of `<bucket>/<key>` answer 503 SlowDown. */
  failNext(path: string, n: number): void
  /** GETs of `<bucket>/<key>` send half the bytes, then reset the connection. */
  truncate(path: string): void
  close(): Promise<void>
}

function xmlError(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`
}

function headersOf(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = String(v)
  return out
}

export async function startObjectStore(opts: {
  /** Directory whose subdirectories are buckets. */
  root: string
  /** When set, every request must be signed by one of these. */
  credentials?: Credentials[]
}): Promise<ObjectStoreStandIn> {
  const root = resolve(opts.root)
  const requests: string[] = []
  const failures = new Map<string, number>()
  const truncated = new Set<string>()

  const server: Server = createServer((req, res) => {
    const send = (status: number, code: string, message: string) => {
      res.writeHead(status, { 'content-type': 'application/xml' }).end(xmlError(code, message))
    }
    const [rawPath = '/', query = ''] = (req.url ?? '/').split('?')
    const key = rawPath.split('/').filter(Boolean).map(decodeURIComponent).join('/')
    requests.push(key)
    if (req.method !== 'GET') return send(405, 'MethodNotAllowed', 'read-only stand-in')
    if (opts.credentials) {
      const v = verifySigV4(
        { method: 'GET', path: rawPath, query, headers: headersOf(req) },
        opts.credentials,
      )
      if (!v.ok) return send(403, v.code, v.message)
    }
    const left = failures.get(key) ?? 0
    if (left > 0) {
      failures.set(key, left - 1)
      return send(503, 'SlowDown', 'injected failure')
    }
    const file = resolve(join(root, key))
    if (!file.startsWith(`${root}${sep}`)) return send(400, 'InvalidURI', 'outside the store')
    readFile(file).then(
      (bytes) => {
        if (truncated.has(key)) {
          res.writeHead(200, { 'content-length': String(bytes.length) })
          res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => res.destroy())
          return
        }
        res.writeHead(200, { 'content-length': String(bytes.length) }).end(bytes)
      },
      () => send(404, 'NoSuchKey', 'The specified key does not exist.'),
    )
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    failNext: (path, n) => failures.set(path, n),
    truncate: (path) => truncated.add(path),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}
