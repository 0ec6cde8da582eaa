/**
 * One autocannon arm in its own process (so that the load generator's CPU is not the benchmark's), printing
 * autocannon's JSON result. With `sign`, every request carries its own signature (a fresh nonce each: the runner
 * refuses a replayed one), drawn from a stock signed before the arm starts, so signing costs the arm nothing.
 *
 *   node --import tsx bench/signed-load.ts < {"url","method","headers","body","connections","durationS","sign"?}
 * @module
 */
import { createRequire } from 'node:module'
import { signRequest } from '@twinserve/shared'

export interface LoadSpec {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  connections: number
  durationS: number
  /** Sign each request with this secret for this path (the body is `body`). */
  sign?: { secret: string; path: string }
}

/** Signatures stocked per second of arm: above any rate this machine reaches (a run out shows as non-2xx). */
const SIGNED_PER_S = 8000

type Request = { headers?: Record<string, string> }
type Autocannon = (opts: Record<string, unknown>) => Promise<unknown>

async function main(): Promise<void> {
  let stdin = ''
  for await (const chunk of process.stdin) stdin += chunk
  const spec = JSON.parse(stdin) as LoadSpec
  const stock: Record<string, string>[] = []
  if (spec.sign) {
    const { secret, path } = spec.sign
    const count = SIGNED_PER_S * spec.durationS
    for (let i = 0; i < count; i++)
      stock.push(await signRequest(secret, { method: spec.method, path, body: spec.body ?? '' }))
  }
  let next = 0
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon
  const result = await autocannon({
    url: spec.url,
    method: spec.method,
    headers: spec.headers,
    ...(spec.body !== undefined ? { body: spec.body } : {}),
    connections: spec.connections,
    duration: spec.durationS,
    ...(spec.sign
      ? {
          requests: [
            {
              setupRequest(req: Request) {
                req.headers = { ...spec.headers, ...stock[next++ % stock.length] }
                return req
              },
            },
          ],
        }
      : {}),
  })
  process.stdout.write(JSON.stringify(result))
}

await main()
