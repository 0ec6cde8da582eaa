/**
 * Issue #16 at the runner's HTTP edge, against a real runner (startRunner) on loopback with real onnxruntime
 * sessions: what one caller sends must not cost other callers anything. Each case names the case.
 */

import { mkdtemp, rm } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { signRequest } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { type RunnerConfigInput, RunnerConfigSchema } from '../config.ts'
import { mergeTensor } from '../merge/merge-tensor.ts'
import { createLogger } from './logger.ts'
import { type Runner, startRunner } from './runner.ts'

const SECRET = 'test-secret-0123456789abcdef'
const INFER = '/v2/models/tiny-twin/infer'
const root = await mkdtemp(join(tmpdir(), 'twinserve-hardening-'))
const pkg = join(root, 'pkg')
const runners: Runner[] = []

async function start(overrides: Partial<RunnerConfigInput> = {}): Promise<Runner> {
  const config = RunnerConfigSchema.parse({
    packages: [pkg],
    port: 0,
    signingSecret: SECRET,
    provider: 'cpu',
    threads: 1,
    ...overrides,
  })
  const r = await startRunner(config, {
    logger: createLogger({ level: 'error', sink: () => undefined }),
    merge: mergeTensor,
  })
  runners.push(r)
  return r
}

let runner: Runner
beforeAll(async () => {
  await writeTwinFixture(pkg)
  runner = await start()
})
afterAll(async () => {
  for (const r of runners) await r.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

const body = (data: number[] = [0.5, -1, 2, 0.25, 1.5, -0.75], parameters?: unknown) =>
  JSON.stringify({
    inputs: [{ name: 'x', shape: [data.length / 6, 6], datatype: 'FP32', data }],
    ...(parameters ? { parameters } : {}),
  })

async function infer(
  text: string,
  opts: { on?: Runner; tenant?: string; headers?: Record<string, string> } = {},
) {
  const signed =
    opts.headers ??
    (await signRequest(SECRET, {
      method: 'POST',
      path: INFER,
      body: text,
      ...(opts.tenant ? { tenant: opts.tenant } : {}),
    }))
  const res = await fetch(`${(opts.on ?? runner).url}${INFER}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...signed },
    body: text,
  })
  return {
    status: res.status,
    headers: res.headers,
    json: (await res.json()) as Record<string, string>,
  }
}

/**
 * A raw POST that sends its headers and `sent` bytes of a body announced as `announced` bytes, then waits.
 * Resolves with the status and how long the answer took, or 'no answer' after 5 s.
 */
function partialPost(
  url: string,
  headers: Record<string, string>,
  announced: number,
  sent: number,
): Promise<{ status: number; connection: string | undefined } | 'no answer'> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json', 'content-length': announced },
    })
    const timer = setTimeout(() => {
      req.destroy()
      resolve('no answer')
    }, 5000)
    req.on('response', (res) => {
      clearTimeout(timer)
      res.resume()
      resolve({ status: res.statusCode ?? 0, connection: res.headers.connection })
      req.destroy()
    })
    req.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    req.write(Buffer.alloc(sent, 0x20))
  })
}

describe('signatures are checked before the body is read (case 5)', () => {
  it('an unsigned POST announcing 30 MiB is refused at once, the body unread and the connection closed', async () => {
    const r = await partialPost(`${runner.url}${INFER}`, {}, 30 * 1024 * 1024, 1024)
    expect(r).toEqual({ status: 401, connection: 'close' })
  })

  it('a signed POST announcing more than the limit is refused before the body (413)', async () => {
    const small = await start({ maxBodyBytes: 4096 })
    const signed = await signRequest(SECRET, { method: 'POST', path: INFER, body: 'x' })
    const r = await partialPost(`${small.url}${INFER}`, signed, 1024 * 1024, 1024)
    expect(r).toEqual({ status: 413, connection: 'close' })
  })

  it('a body that does not hash to the signed hash is refused', async () => {
    const signed = await signRequest(SECRET, { method: 'POST', path: INFER, body: body() })
    const r = await infer(body([1, 1, 1, 1, 1, 1]), { headers: signed })
    expect(r.status).toBe(401)
    expect(r.json.error).toMatch(/body does not match its signed hash/)
  })
})

describe('replay (case 6)', () => {
  it('a captured signed request is accepted once', async () => {
    const text = body()
    const signed = await signRequest(SECRET, { method: 'POST', path: INFER, body: text })
    expect((await infer(text, { headers: signed })).status).toBe(200)
    const again = await infer(text, { headers: signed })
    expect(again.status).toBe(401)
    expect(again.json).toMatchObject({ code: 'UNAUTHENTICATED' })
    expect(again.json.error).toMatch(/replayed/)
  })
})

describe('trickled bodies (faults)', () => {
  it('a body that does not arrive within --body-timeout-ms is answered 408', async () => {
    const slow = await start({ bodyTimeoutMs: 300 })
    const signed = await signRequest(SECRET, { method: 'POST', path: INFER, body: body() })
    const r = await partialPost(`${slow.url}${INFER}`, signed, Buffer.byteLength(body()), 10)
    expect(r).toMatchObject({ status: 408 })
  })
})

describe('numbers out of range (case 1)', () => {
  it('finite inputs the model overflows on are 422 naming the row; the other rows’ callers are unaffected', async () => {
    const huge = 3.4e38
    const r = await infer(body([0.5, -1, 2, 0.25, 1.5, -0.75, huge, huge, huge, huge, huge, huge]))
    expect(r.status).toBe(422)
    expect(r.json.code).toBe('NON_FINITE_OUTPUT')
    expect(r.json.error).toMatch(/output 'y' row 1\b/)
    expect(r.json.error).not.toMatch(/row 0/)
    expect((await infer(body())).status).toBe(200)
  })

  it('values beyond float32 and unbounded weights are refused as the caller’s mistake (400)', async () => {
    const cases = [
      body([0, 1e300, 0, 0, 0, 0]),
      body(undefined, { experts: { alpha: 1e39 } }),
      body(undefined, { experts: { alpha: 1e30, beta: -1e30 } }),
      body(undefined, { experts: { alpha: 1 }, merge_method: 'ties', lambda: 1e38 }),
    ]
    for (const text of cases) {
      const r = await infer(text)
      expect(r.status, text).toBe(400)
      expect(r.json.code).toBe('INVALID_REQUEST')
    }
  })
})

describe('deep nesting (case 3)', () => {
  it('a body nesting 2,000 levels deep is a 400, not a stack overflow', async () => {
    const deep = `{"inputs":[{"name":"x","shape":[1,6],"datatype":"FP32","data":${'['.repeat(2000)}1${']'.repeat(2000)}}]}`
    const r = await infer(deep)
    expect(r.status).toBe(400)
    expect(r.json.error).toMatch(/nests deeper than 32 levels/)
    expect((await infer(body())).status).toBe(200)
  })
})

describe('merge quotas per tenant (case 8)', () => {
  const ties = (density: number) => ({
    experts: { alpha: 1, beta: 0.5 },
    merge_method: 'ties',
    density,
  })

  it('a tenant past its new-recipe quota gets 429; its cached recipes and other tenants still run', async () => {
    const r = await start({ mergeQuotaPerMinute: 2, mergeCacheEntries: 8 })
    expect((await infer(body(undefined, ties(0.3)), { on: r, tenant: 'a' })).status).toBe(200)
    expect((await infer(body(undefined, ties(0.4)), { on: r, tenant: 'a' })).status).toBe(200)
    const refused = await infer(body(undefined, ties(0.5)), { on: r, tenant: 'a' })
    expect(refused.status).toBe(429)
    expect(refused.json.code).toBe('RATE_LIMITED')
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/)
    // A recipe differing below the parameter grid is the cached one: free.
    expect((await infer(body(undefined, ties(0.3 + 1e-9)), { on: r, tenant: 'a' })).status).toBe(
      200,
    )
    expect((await infer(body(undefined, ties(0.5)), { on: r, tenant: 'b' })).status).toBe(200)
    // …and now that b merged it, a may use it too.
    expect((await infer(body(undefined, ties(0.5)), { on: r, tenant: 'a' })).status).toBe(200)
  })
})
