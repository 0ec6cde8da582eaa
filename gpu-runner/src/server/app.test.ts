/**
 * The runner's HTTP surface, in-process: a real runner (startRunner) on a loopback port with real onnxruntime
 * sessions over a generated fixture package, called with fetch. Every endpoint and error case of the protocol.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ErrorBodySchema,
  InferenceResponseSchema,
  ModelMetadataSchema,
  ServerMetadataSchema,
  signRequest,
} from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { withinStep } from '../../test-support/step-deadline.ts'
import { type RunnerConfigInput, RunnerConfigSchema } from '../config.ts'
import { mergeTensor } from '../merge/merge-tensor.ts'
import { createLogger } from './logger.ts'
import { type Runner, startRunner } from './runner.ts'

const SECRET = 'test-secret-0123456789abcdef'
const root = await mkdtemp(join(tmpdir(), 'twinserve-app-'))
const pkg = join(root, 'pkg')
const runners: Runner[] = []
const logs: Record<string, unknown>[] = []

async function start(overrides: Partial<RunnerConfigInput> = {}): Promise<Runner> {
  const config = RunnerConfigSchema.parse({
    packages: [pkg],
    port: 0,
    signingSecret: SECRET,
    provider: 'cpu',
    threads: 1,
    logLevel: 'debug',
    ...overrides,
  })
  const logger = createLogger({ level: 'debug', sink: (l) => logs.push(JSON.parse(l)) })
  const r = await startRunner(config, { logger, merge: mergeTensor })
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

interface CallOptions {
  method?: string
  body?: string
  headers?: Record<string, string>
  /** false: send unsigned; a string: sign with this secret; default: the right secret. */
  sign?: false | string
  timestamp?: number
  on?: Runner
}

async function call(path: string, opts: CallOptions = {}) {
  const method = opts.method ?? (opts.body === undefined ? 'GET' : 'POST')
  const body = opts.body ?? ''
  const headers: Record<string, string> = { ...opts.headers }
  if (
    opts.body !== undefined &&
    !Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')
  )
    headers['content-type'] = 'application/json'
  if (opts.sign !== false)
    Object.assign(
      headers,
      await signRequest(typeof opts.sign === 'string' ? opts.sign : SECRET, {
        method,
        path,
        body,
        ...(opts.timestamp ? { timestamp: opts.timestamp } : {}),
      }),
    )
  const res = await fetch(`${(opts.on ?? runner).url}${path}`, {
    method,
    headers,
    ...(method === 'GET' || method === 'HEAD' ? {} : { body }),
  })
  const text = await res.text()
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { res, status: res.status, json: json as Record<string, unknown>, text }
}

const INFER = '/v2/models/tiny-twin/infer'
const row = [0.5, -1, 2, 0.25, 1.5, -0.75]
const body = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: row }],
    ...extra,
  })

function expectError(
  r: { status: number; json: Record<string, unknown> },
  status: number,
  code: string,
  message: RegExp,
) {
  expect(r.status).toBe(status)
  const parsed = ErrorBodySchema.safeParse(r.json)
  expect(parsed.success, JSON.stringify(r.json)).toBe(true)
  expect(r.json.code).toBe(code)
  expect(String(r.json.error)).toMatch(message)
  expect(r.json.request_id).toEqual(expect.any(String))
}

/**
 * Resolves once one request waits in `r`'s queue (its /metrics gauge). A fixed sleep instead loses the race on a
 * loaded machine: the request is not queued yet when the test acts on it.
 */
function queued(r: Runner): Promise<void> {
  return withinStep('a request is queued', 20_000, async (signal) => {
    while (!signal.aborted) {
      const { text } = await call('/metrics', { sign: false, on: r })
      if (/^twinserve_runner_queue_depth 1$/m.test(text)) return
      await new Promise((res) => setTimeout(res, 20))
    }
  })
}

describe('health, metadata', () => {
  it('health endpoints answer unsigned (probes cannot sign)', async () => {
    const live = await call('/v2/health/live', { sign: false })
    expect(live.status).toBe(200)
    expect(live.json).toEqual({ live: true })
    const ready = await call('/v2/health/ready', { sign: false })
    expect(ready.status).toBe(200)
    expect(ready.json).toEqual({ ready: true })
  })

  it('GET /v2 reports the server and the execution provider', async () => {
    const r = await call('/v2')
    expect(r.status).toBe(200)
    expect(ServerMetadataSchema.parse(r.json)).toMatchObject({ name: 'twinserve-gpu-runner' })
    expect(r.json.provider).toBe('cpu')
    expect(r.json.models).toEqual(['tiny-twin'])
  })

  it('model metadata lists inputs, outputs with expert_weights, experts and variants', async () => {
    const r = await call('/v2/models/tiny-twin')
    expect(r.status).toBe(200)
    const meta = ModelMetadataSchema.parse(r.json)
    expect(meta.inputs).toEqual([{ name: 'x', datatype: 'FP32', shape: [-1, 6] }])
    expect(meta.outputs.map((o) => o.name)).toEqual(['y', 'label', 'expert_weights'])
    expect(meta.outputs[2]).toEqual({ name: 'expert_weights', datatype: 'FP32', shape: [-1, 3] })
    expect(meta.parameters).toMatchObject({
      experts: ['alpha', 'beta', 'gamma'],
      variants: ['shared', 'uniform'],
      provider: 'cpu',
      merge_paths: ['factored', 'materialized', 'static'],
    })
    expect(await call('/v2/models/tiny-twin/ready')).toMatchObject({
      status: 200,
      json: { name: 'tiny-twin', ready: true },
    })
  })

  it('unknown models, versions and routes are 404 with a JSON error', async () => {
    expectError(
      await call('/v2/models/nope'),
      404,
      'NOT_FOUND',
      /model 'nope' is not served here; models: tiny-twin/,
    )
    expectError(await call('/v2/models/nope/ready'), 404, 'NOT_FOUND', /nope/)
    expectError(await call('/v2/models/nope/infer', { body: body() }), 404, 'NOT_FOUND', /nope/)
    expectError(
      await call('/v2/models/tiny-twin/versions/1'),
      404,
      'NOT_FOUND',
      /no version '1'; its versions are [0-9a-f]{12}/,
    )
    expectError(
      await call('/v2/models/tiny-twin/versions/1/ready'),
      404,
      'NOT_FOUND',
      /no version '1'/,
    )
    expectError(
      await call('/v2/models/tiny-twin/versions/1/infer', { body: body() }),
      404,
      'NOT_FOUND',
      /no version/,
    )
    expectError(
      await call('/v3/anything', { sign: false }),
      404,
      'NOT_FOUND',
      /no route GET \/v3\/anything/,
    )
  })

  it('a known path with the wrong method is 405', async () => {
    expectError(
      await call(INFER),
      405,
      'METHOD_NOT_ALLOWED',
      /GET is not allowed on .*infer; use POST/,
    )
    expectError(
      await call('/v2/models/tiny-twin', { body: '{}' }),
      405,
      'METHOD_NOT_ALLOWED',
      /use GET/,
    )
    expectError(
      await call('/v2/health/live', { method: 'DELETE', sign: false }),
      405,
      'METHOD_NOT_ALLOWED',
      /DELETE/,
    )
  })
})

describe('inference', () => {
  it('infers, echoes the id and the request id, and reports the merge path', async () => {
    const r = await call(INFER, {
      body: body({ id: 'req-42' }),
      headers: { 'x-request-id': 'trace-abc' },
    })
    expect(r.status).toBe(200)
    const res = InferenceResponseSchema.parse(r.json)
    expect(res).toMatchObject({
      model_name: 'tiny-twin',
      id: 'req-42',
      parameters: { variant: 'twin', merge_path: 'factored', provider: 'cpu' },
    })
    expect(res.outputs.map((o) => [o.name, o.datatype, o.shape])).toEqual([
      ['y', 'FP32', [1, 3]],
      ['label', 'INT64', [1]],
      ['expert_weights', 'FP32', [1, 3]],
    ])
    const w = res.outputs[2]?.data as number[]
    expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5)
    expect(r.res.headers.get('x-request-id')).toBe('trace-abc')
    const line = logs.find((l) => l.msg === 'infer' && l.request_id === 'trace-abc')
    expect(line).toMatchObject({
      model: 'tiny-twin',
      variant: 'twin',
      merge_path: 'factored',
      status: 200,
      rows: 1,
    })
  })

  it('accepts nested and flat data alike', async () => {
    const flat = await call(INFER, {
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [2, 6], datatype: 'FP32', data: [...row, ...row] }],
      }),
    })
    const nested = await call(INFER, {
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [2, 6], datatype: 'FP32', data: [row, row] }],
      }),
    })
    expect(flat.status).toBe(200)
    expect(nested.json.outputs).toEqual(flat.json.outputs)
  })

  it('carries variant, explicit mix and materialised merges', async () => {
    const v = await call(INFER, { body: body({ parameters: { variant: 'uniform' } }) })
    expect(v.json.parameters).toEqual({ variant: 'uniform', merge_path: 'static', provider: 'cpu' })
    const mix = { alpha: 0.2, beta: 0.3, gamma: 0.5 }
    const f = await call(INFER, {
      body: body({ parameters: { experts: mix }, outputs: [{ name: 'y' }] }),
    })
    const m = await call(INFER, {
      body: body({
        parameters: { experts: mix, merge_method: 'task_arithmetic' },
        outputs: [{ name: 'y' }],
      }),
    })
    expect(m.json.parameters).toMatchObject({ merge_path: 'materialized' })
    const fy = (f.json.outputs as { data: number[] }[])[0]?.data ?? []
    const my = (m.json.outputs as { data: number[] }[])[0]?.data ?? []
    my.forEach((v, i) => {
      expect(v).toBeCloseTo(fy[i] ?? Number.NaN, 5)
    })
  })

  it('refuses malformed, wrongly shaped and mistaken requests with a 4xx naming the problem', async () => {
    const cases: [string, CallOptions, number, string, RegExp][] = [
      ['not JSON', { body: '{"inputs": [' }, 400, 'INVALID_REQUEST', /not valid JSON/],
      [
        'JSON but not an object',
        { body: '[1,2]' },
        400,
        'INVALID_REQUEST',
        /invalid inference request/,
      ],
      ['no inputs', { body: '{}' }, 400, 'INVALID_REQUEST', /inputs/],
      ['an unknown top-level key', { body: body({ input: [] }) }, 400, 'INVALID_REQUEST', /input/],
      [
        'data that does not fill the shape',
        {
          body: JSON.stringify({
            inputs: [{ name: 'x', shape: [2, 6], datatype: 'FP32', data: row }],
          }),
        },
        400,
        'INVALID_REQUEST',
        /shape \[2,6\] \(12 elements\) but 6 data values/,
      ],
      [
        'the wrong feature size',
        {
          body: JSON.stringify({
            inputs: [{ name: 'x', shape: [1, 5], datatype: 'FP32', data: row.slice(1) }],
          }),
        },
        400,
        'INVALID_REQUEST',
        /'x' has shape \[1,5\], the model expects \[-1,6\]/,
      ],
      [
        'the wrong datatype',
        {
          body: JSON.stringify({
            inputs: [{ name: 'x', shape: [1, 6], datatype: 'INT32', data: [1, 2, 3, 4, 5, 6] }],
          }),
        },
        400,
        'INVALID_REQUEST',
        /datatype INT32, the model expects FP32/,
      ],
      [
        'a string in FP32 data',
        {
          body: JSON.stringify({
            inputs: [{ name: 'x', shape: [1, 6], datatype: 'FP32', data: ['a', 2, 3, 4, 5, 6] }],
          }),
        },
        400,
        'INVALID_REQUEST',
        /expected a number/,
      ],
      [
        'an unknown input',
        {
          body: JSON.stringify({
            inputs: [{ name: 'z', shape: [1], datatype: 'FP32', data: [1] }],
          }),
        },
        400,
        'INVALID_REQUEST',
        /unknown input 'z'/,
      ],
      [
        'an unknown output',
        { body: body({ outputs: [{ name: 'logits' }] }) },
        400,
        'INVALID_REQUEST',
        /unknown output 'logits'/,
      ],
      [
        'a misspelt merge control',
        { body: body({ parameters: { topk: 1 } }) },
        400,
        'INVALID_REQUEST',
        /unknown merge control 'topk'/,
      ],
      [
        'an unknown expert',
        { body: body({ parameters: { experts: { omega: 1 } } }) },
        404,
        'UNKNOWN_EXPERT',
        /no expert 'omega'/,
      ],
      [
        'an unknown variant',
        { body: body({ parameters: { variant: 'ties' } }) },
        404,
        'NOT_FOUND',
        /no variant 'ties'/,
      ],
      [
        'a bad merge parameter',
        { body: body({ parameters: { experts: { alpha: 1 }, merge_method: 'ties', density: 2 } }) },
        400,
        'INVALID_REQUEST',
        /parameters\.density/,
      ],
      [
        'a non-JSON content type',
        { body: body(), headers: { 'content-type': 'text/plain' } },
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        /application\/json/,
      ],
      [
        'a bad timeout header',
        { body: body(), headers: { 'x-twinserve-deadline-ms': 'soon' } },
        400,
        'INVALID_REQUEST',
        /x-twinserve-deadline-ms/,
      ],
    ]
    for (const [name, opts, status, code, message] of cases) {
      const r = await call(INFER, opts)
      expect(r.status, name).toBe(status)
      expectError(r, status, code, message)
    }
    // Nothing above broke the runner.
    expect((await call(INFER, { body: body() })).status).toBe(200)
  })

  it('an input the graph itself refuses is a 400, not a 500, and the runner goes on', async () => {
    const masked = join(root, 'masked')
    await writeTwinFixture(masked, { sequence: true, withMask: true, name: 'masked' })
    const two = await start({ packages: [pkg, masked] })
    const req = (maskSeq: number) =>
      JSON.stringify({
        inputs: [
          { name: 'x', shape: [1, 2, 6], datatype: 'FP32', data: [...row, ...row] },
          {
            name: 'mask',
            shape: [1, maskSeq],
            datatype: 'FP32',
            data: Array.from({ length: maskSeq }, () => 1),
          },
        ],
      })
    expectError(
      await call('/v2/models/masked/infer', { body: req(3), on: two }),
      400,
      'INVALID_REQUEST',
      /model 'masked' cannot run this input/,
    )
    expect((await call('/v2/models/masked/infer', { body: req(2), on: two })).status).toBe(200)
    expect((await call(INFER, { body: body(), on: two })).status).toBe(200)
  })

  it('refuses bodies over the limit with 413, with or without Content-Length', async () => {
    const small = await start({ maxBodyBytes: 2048 })
    const big = JSON.stringify({
      inputs: [
        {
          name: 'x',
          shape: [100, 6],
          datatype: 'FP32',
          data: Array.from({ length: 600 }, () => 0.123456),
        },
      ],
    })
    expectError(
      await call(INFER, { body: big, on: small }),
      413,
      'PAYLOAD_TOO_LARGE',
      /exceeds the runner's limit of 2048 bytes/,
    )
    // Chunked: no Content-Length, so the limit is enforced while reading.
    const headers = {
      'content-type': 'application/json',
      ...(await signRequest(SECRET, { method: 'POST', path: INFER, body: big })),
    }
    const stream = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big))
        c.close()
      },
    })
    const res = await fetch(`${small.url}${INFER}`, {
      method: 'POST',
      headers,
      body: stream,
      duplex: 'half',
    } as RequestInit)
    expect(res.status).toBe(413)
    expect(((await res.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE')
    expect((await call(INFER, { body: body(), on: small })).status).toBe(200)
  })
})

describe('request signatures', () => {
  it('missing, wrong, expired, tampered or misdirected signatures are 401', async () => {
    expectError(
      await call(INFER, { body: body(), sign: false }),
      401,
      'UNAUTHENTICATED',
      /missing signature headers/,
    )
    expectError(
      await call(INFER, { body: body(), sign: 'another-secret-0123456789' }),
      401,
      'UNAUTHENTICATED',
      /bad signature/,
    )
    const old = Math.floor(Date.now() / 1000) - 600
    expectError(
      await call(INFER, { body: body(), timestamp: old }),
      401,
      'UNAUTHENTICATED',
      /signature expired/,
    )
    const signed = await signRequest(SECRET, { method: 'POST', path: INFER, body: body() })
    expectError(
      await call(INFER, { body: body({ id: 'changed' }), sign: false, headers: signed }),
      401,
      'UNAUTHENTICATED',
      /body does not match its signed hash/,
    )
    const forOther = await signRequest(SECRET, {
      method: 'POST',
      path: '/v2/models/other/infer',
      body: body(),
    })
    expectError(
      await call(INFER, { body: body(), sign: false, headers: forOther }),
      401,
      'UNAUTHENTICATED',
      /bad signature/,
    )
    expectError(await call('/v2', { sign: false }), 401, 'UNAUTHENTICATED', /missing/)
    expectError(
      await call('/v2/models/tiny-twin', { sign: false }),
      401,
      'UNAUTHENTICATED',
      /missing/,
    )
  })

  it('--insecure-local accepts unsigned requests', async () => {
    const open = await start({ insecureLocal: true, signingSecret: undefined })
    expect((await call(INFER, { body: body(), sign: false, on: open })).status).toBe(200)
    expect((await call('/v2', { sign: false, on: open })).status).toBe(200)
  })
})

describe('backpressure and deadlines', () => {
  it('a full queue answers 503 with Retry-After, and the accepted requests still succeed', async () => {
    // A 1.5 s batch window holds the first two in the queue while the other three arrive, even on a busy machine.
    const tight = await start({ maxQueue: 2, maxBatchWaitMs: 1500, maxBatchSize: 64 })
    const calls = Array.from({ length: 5 }, () => call(INFER, { body: body(), on: tight }))
    const results = await Promise.all(calls)
    const statuses = results.map((r) => r.status).sort()
    expect(statuses).toEqual([200, 200, 503, 503, 503])
    const refused = results.find((r) => r.status === 503)
    expect(refused?.res.headers.get('retry-after')).toBe('1')
    expect(refused?.json).toMatchObject({ code: 'RUNNER_OVERLOADED' })
    const metrics = await call('/metrics', { sign: false, on: tight })
    expect(metrics.text).toMatch(/twinserve_runner_rejected_total\{reason="overloaded"\} 3/)
    // The two accepted requests went in one batch.
    expect(metrics.text).toMatch(/twinserve_runner_batch_requests_sum\{model="tiny-twin"\} 2/)
  })

  it('a request past its deadline is 504; a caller can shorten the deadline', async () => {
    const slow = await start({ maxBatchWaitMs: 400, maxBatchSize: 64 })
    expectError(
      await call(INFER, { body: body(), on: slow, headers: { 'x-twinserve-deadline-ms': '50' } }),
      504,
      'RUNNER_TIMEOUT',
      /deadline \(\d+ ms\) passed/,
    )
    const tiny = await start({ maxBatchWaitMs: 400, maxBatchSize: 64, requestTimeoutMs: 60 })
    expectError(await call(INFER, { body: body(), on: tiny }), 504, 'RUNNER_TIMEOUT', /deadline/)
  })
})

describe('client disconnects', () => {
  it('a request whose client hung up leaves the queue and is counted as 499', async () => {
    const r = await start({ maxBatchWaitMs: 5000, maxBatchSize: 64 })
    const ac = new AbortController()
    const headers = {
      'content-type': 'application/json',
      ...(await signRequest(SECRET, { method: 'POST', path: INFER, body: body() })),
    }
    const pending = fetch(`${r.url}${INFER}`, {
      method: 'POST',
      headers,
      body: body(),
      signal: ac.signal,
    })
    await queued(r)
    ac.abort()
    await expect(pending).rejects.toThrow()
    let text = ''
    for (let i = 0; i < 50 && !/code="499"\} 1/.test(text); i++) {
      await new Promise((res) => setTimeout(res, 20))
      text = (await call('/metrics', { sign: false, on: r })).text
    }
    expect(text).toMatch(
      /twinserve_runner_requests_total\{model="tiny-twin",variant="twin",merge_path="factored",code="499"\} 1/,
    )
    expect(text).toMatch(/twinserve_runner_queue_depth 0/)
  })
})

describe('metrics', () => {
  it('exposes request counts, latency, batches, queue, cache and provider', async () => {
    await call(INFER, {
      body: body({ parameters: { experts: { alpha: 1 }, merge_method: 'ties', density: 0.5 } }),
    })
    await call(INFER, {
      body: body({ parameters: { experts: { alpha: 1 }, merge_method: 'ties', density: 0.5 } }),
    })
    const r = await call('/metrics', { sign: false })
    expect(r.status).toBe(200)
    expect(r.res.headers.get('content-type')).toMatch(/text\/plain/)
    const t = r.text
    expect(t).toMatch(
      /twinserve_runner_requests_total\{model="tiny-twin",variant="twin",merge_path="factored",code="200"\} \d+/,
    )
    expect(t).toMatch(
      /twinserve_runner_requests_total\{model="tiny-twin",variant="",merge_path="",code="400"\} \d+/,
    )
    // Unknown model names (caller-chosen) do not become label values.
    expect(t).toMatch(
      /twinserve_runner_requests_total\{model="",variant="",merge_path="",code="404"\} \d+/,
    )
    expect(t).not.toMatch(/model="nope"/)
    expect(t).toMatch(
      /twinserve_runner_requests_total\{model="tiny-twin",variant="",merge_path="",code="415"\} \d+/,
    )
    expect(t).toMatch(
      /twinserve_runner_request_duration_seconds_count\{model="tiny-twin",variant="uniform",merge_path="static"\} 1/,
    )
    expect(t).toMatch(/twinserve_runner_batch_rows_count\{model="tiny-twin"\} \d+/)
    expect(t).toMatch(/twinserve_runner_queue_depth 0/)
    expect(t).toMatch(/twinserve_runner_in_flight 0/)
    expect(t).toMatch(
      /twinserve_runner_merge_cache_lookups_total\{model="tiny-twin",result="miss"\} \d+/,
    )
    expect(t).toMatch(
      /twinserve_runner_merge_cache_lookups_total\{model="tiny-twin",result="hit"\} [1-9]/,
    )
    expect(t).toMatch(/twinserve_runner_merge_cache_entries\{model="tiny-twin"\} [1-9]/)
    expect(t).toMatch(/twinserve_runner_provider_info\{provider="cpu"\} 1/)
    expect(t).toMatch(/twinserve_runner_draining 0/)
  })
})

describe('draining', () => {
  it('after shutdown starts, readiness turns false and new work is refused', async () => {
    // The batch would wait 10 s to fill; the drain sends it at once.
    const r = await start({ maxBatchWaitMs: 10_000, maxBatchSize: 64 })
    const accepted = call(INFER, { body: body(), on: r })
    await queued(r)
    const done = r.shutdown('test')
    const ready = await call('/v2/health/ready', { sign: false, on: r }).catch(() => undefined)
    // Either the listener is already closed or it answers not-ready.
    if (ready) expect(ready.status).toBe(503)
    expect((await accepted).status).toBe(200)
    expect(await done).toEqual({ drained: true })
  })
})
