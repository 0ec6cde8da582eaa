import { InferenceResponseSchema, ModelMetadataSchema, RunnerListSchema } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { gatewayLogs } from './capture-logs.ts'
import {
  bearer,
  createKey,
  deregister,
  expectError,
  fleet,
  gw,
  infer,
  inferBody,
  migrate,
  register,
  registration,
  retire,
  standIns,
} from './helpers.ts'
import {
  TEST_ADMIN_SECRET,
  TEST_COLD_START_RETRY_AFTER_S,
  TEST_COLD_START_WAIT_MS,
  TEST_MAX_BODY_BYTES,
  TEST_MAX_JSON_BODY_BYTES,
} from './test-env.ts'

// Runners here are STAND-INS (dev/runner-stand-in.ts): real HTTP servers that speak V2 and check the
// gateway's signatures, standing in for runner processes in these workerd-only tests.

let key: string

beforeAll(async () => {
  await migrate()
  key = (await createKey({ tenant: 'routing', scopes: ['infer'], models: ['*'] })).key
})

const listRunners = async () =>
  RunnerListSchema.parse(
    await (await gw('/admin/runners', { headers: bearer(TEST_ADMIN_SECRET) })).json(),
  )

describe('routing to runners (stand-ins over real HTTP)', () => {
  it('proxies inference signed, with request id and runner headers, merge controls passed through', async () => {
    const [id] = await fleet('basic', 1, 'm-basic')
    const controls = { experts: { a: 0.7, b: 0.3 } }
    const res = await infer('m-basic', key, inferBody([1, 2, 3, 4], controls), {
      'x-request-id': 'client-req-42',
    })
    const text = await res.text()
    expect(res.status, text).toBe(200)
    expect(res.headers.get('x-request-id')).toBe('client-req-42')
    expect(res.headers.get('x-twinserve-runner')).toBe(id)
    const body = InferenceResponseSchema.parse(JSON.parse(text))
    expect(body.id).toBe('req-1')
    expect(body.outputs[0]?.data).toEqual([10])
    expect(JSON.parse(String(body.parameters?.received_parameters))).toEqual(controls)

    const stats = await standIns.stats(id ?? '')
    expect(stats.infer).toBe(1)
    expect(stats.bad_signatures).toBe(0)
    expect(stats.last_headers['x-request-id']).toBe('client-req-42')
    expect(stats.last_headers['x-twinserve-signature']).toMatch(/^[0-9a-f]{64}$/)
    // The caller's key never reaches a runner.
    expect(stats.last_headers.authorization).toBeUndefined()
    expect(Number(stats.last_headers['x-twinserve-deadline-ms'])).toBeGreaterThan(0)

    const meta = await gw('/v2/models/m-basic', { headers: bearer(key) })
    expect(meta.status).toBe(200)
    expect(ModelMetadataSchema.parse(await meta.json()).name).toBe('m-basic')
    const ready = await gw('/v2/models/m-basic/ready', { headers: bearer(key) })
    expect(await ready.json()).toEqual({ name: 'm-basic', ready: true })
    await retire([id ?? ''])
  })

  it('spreads load over the runners holding the model (power of two choices)', async () => {
    const ids = await fleet('spread', 3, 'm-spread')
    await standIns.behave(ids[0] ?? '', { mode: 'delay', ms: 20 })
    await standIns.behave(ids[1] ?? '', { mode: 'delay', ms: 20 })
    await standIns.behave(ids[2] ?? '', { mode: 'delay', ms: 20 })
    const results = await Promise.all(
      Array.from({ length: 36 }, () => infer('m-spread', key).then((r) => r.status)),
    )
    expect(results.every((s) => s === 200)).toBe(true)
    const served = await Promise.all(ids.map(async (id) => (await standIns.stats(id)).infer))
    expect(served.reduce((a, b) => a + b, 0)).toBe(36)
    // 36 requests over 3 equal runners: each gets a fair share (P(any < 4) is below 1e-3 even for uniform
    // random picks, and two choices balance tighter than that).
    for (const n of served) expect(n).toBeGreaterThanOrEqual(4)
    await retire(ids)
  })

  it('prefers the least-loaded runner by its reported load', async () => {
    const ids = await fleet('load', 2, 'm-load')
    const busy = ids[0] ?? ''
    const idle = ids[1] ?? ''
    const s = await standIns.stats(busy)
    await register(
      registration(busy, s.url, [{ name: 'm-load' }], {
        load: { queue_depth: 50, in_flight: 10, capacity: 64 },
      }),
      'heartbeat',
    )
    for (let i = 0; i < 10; i++) expect((await infer('m-load', key)).status).toBe(200)
    expect((await standIns.stats(idle)).infer).toBe(10)
    expect((await standIns.stats(busy)).infer).toBe(0)
    await retire(ids)
  })

  it('routes a variant to runners that list it, and never to a draining runner', async () => {
    const plain = await standIns.start('variant-plain', ['m-var'])
    const ties = await standIns.start('variant-ties', ['m-var'])
    const draining = await standIns.start('variant-drain', ['m-var'])
    await register(
      registration('variant-plain', plain.url, [{ name: 'm-var', variants: ['shared'] }]),
    )
    await register(
      registration('variant-ties', ties.url, [{ name: 'm-var', variants: ['shared', 'ties'] }]),
    )
    await register(
      registration(
        'variant-drain',
        draining.url,
        [{ name: 'm-var', variants: ['shared', 'ties'] }],
        {
          draining: true,
        },
      ),
    )
    for (let i = 0; i < 6; i++) {
      const res = await infer('m-var', key, inferBody([1], { variant: 'ties' }))
      expect(res.headers.get('x-twinserve-runner')).toBe('variant-ties')
    }
    for (let i = 0; i < 6; i++) expect((await infer('m-var', key)).status).toBe(200)
    expect((await standIns.stats('variant-drain')).infer).toBe(0)
    expect((await standIns.stats('variant-plain')).infer).toBeGreaterThan(0)
    await retire(['variant-plain', 'variant-ties', 'variant-drain'])
  })

  it('relays a runner 4xx (the caller’s mistake) with our request id, without retrying', async () => {
    // Registered for a model the stand-in does not actually serve: it answers 404 NOT_FOUND.
    const a = await standIns.start('relay-a', ['something-else'])
    const b = await standIns.start('relay-b', ['something-else'])
    await register(registration('relay-a', a.url, [{ name: 'm-relay' }]))
    await register(registration('relay-b', b.url, [{ name: 'm-relay' }]))
    const res = await infer('m-relay', key)
    const body = await expectError(res, 404, 'NOT_FOUND')
    expect(body.error).toMatch(/m-relay/)
    const total = (await standIns.stats('relay-a')).infer + (await standIns.stats('relay-b')).infer
    expect(total).toBe(1)
    await retire(['relay-a', 'relay-b'])
  })
})

describe('failover', () => {
  for (const [name, behavior] of [
    ['a dropped connection', { mode: 'reset' }],
    ['a 500', { mode: 'fail', status: 500 }],
    ['a response that is not the protocol', { mode: 'garbage' }],
  ] as const) {
    it(`retries on a different runner after ${name}, and opens the bad runner's breaker`, async () => {
      const prefix = `fo-${behavior.mode}`
      const ids = await fleet(prefix, 2, `m-${prefix}`)
      const bad = ids[0] ?? ''
      const good = ids[1] ?? ''
      await standIns.behave(bad, behavior)
      const statuses = await Promise.all(
        Array.from({ length: 20 }, () => infer(`m-${prefix}`, key).then((r) => r.status)),
      )
      expect(statuses).toEqual(Array(20).fill(200))
      expect((await standIns.stats(good)).infer).toBe(20)
      const failedAttempts = (await standIns.stats(bad)).infer
      expect(failedAttempts).toBeGreaterThan(0)
      expect(
        gatewayLogs().some((l) => l.event === 'runner_attempt_failed' && l.runner_id === bad),
      ).toBe(true)

      // Threshold 2 in tests: the bad runner's breaker is open, so it gets no more traffic.
      const view = (await listRunners()).runners.find((r) => r.runner_id === bad)
      expect(view?.breaker).toBe('open')
      expect(view?.healthy).toBe(false)
      for (let i = 0; i < 5; i++) expect((await infer(`m-${prefix}`, key)).status).toBe(200)
      expect((await standIns.stats(bad)).infer).toBe(failedAttempts)
      await retire(ids)
    })
  }

  it('a runner killed mid-load causes no failed client request', async () => {
    const ids = await fleet('kill', 3, 'm-kill')
    for (const id of ids) await standIns.behave(id, { mode: 'delay', ms: 30 })
    const inflight = Array.from({ length: 30 }, (_, i) =>
      new Promise((r) => setTimeout(r, i * 6))
        .then(() => infer('m-kill', key))
        .then((r) => r.status),
    )
    // Kill it once it is serving (mid-load, with requests still to come).
    const victim = ids[0] ?? ''
    for (let i = 0; i < 100 && (await standIns.stats(victim)).infer === 0; i++)
      await new Promise((r) => setTimeout(r, 10))
    expect((await standIns.stats(victim)).infer).toBeGreaterThan(0)
    await standIns.kill(victim)
    const statuses = await Promise.all(inflight)
    expect(statuses).toEqual(Array(30).fill(200))
    // The kill really cut requests off mid-flight (or refused them), and those were retried elsewhere.
    const cut = gatewayLogs().filter(
      (l) => l.event === 'runner_attempt_failed' && l.runner_id === victim,
    )
    expect(cut.length).toBeGreaterThan(0)
    const survivors =
      (await standIns.stats(ids[1] ?? '')).infer + (await standIns.stats(ids[2] ?? '')).infer
    expect(survivors).toBeGreaterThan(0)
    await retire(ids)
  })

  it('when every runner fails: 503 NO_RUNNER with Retry-After; an overloaded runner’s own 503 is relayed', async () => {
    const ids = await fleet('allfail', 2, 'm-allfail')
    for (const id of ids) await standIns.behave(id, { mode: 'reset' })
    const res = await infer('m-allfail', key)
    const body = await expectError(res, 503, 'NO_RUNNER')
    expect(body.error).toMatch(/all 2 runner\(s\) tried/)
    expect(res.headers.get('retry-after')).toBe(String(TEST_COLD_START_RETRY_AFTER_S))
    await retire(ids)

    const busy = await fleet('busy', 1, 'm-busy')
    await standIns.behave(busy[0] ?? '', { mode: 'fail', status: 503 })
    const over = await infer('m-busy', key)
    await expectError(over, 503, 'RUNNER_OVERLOADED')
    await retire(busy)
  })

  it('504 RUNNER_TIMEOUT when the client deadline passes before any runner answers', async () => {
    const ids = await fleet('slow', 1, 'm-slow')
    await standIns.behave(ids[0] ?? '', { mode: 'delay', ms: 2000 })
    const started = Date.now()
    const res = await infer('m-slow', key, inferBody(), { 'x-twinserve-deadline-ms': '300' })
    await expectError(res, 504, 'RUNNER_TIMEOUT')
    expect(Date.now() - started).toBeLessThan(1500)
    await retire(ids)
  })
})

describe('cold starts', () => {
  /** A model some runner served once and that none serves now (scaled to zero): the catalog knows it. */
  async function servedOnce(model: string, id: string): Promise<void> {
    await register(registration(id, 'http://127.0.0.1:9', [{ name: model }]))
    await deregister(id)
  }

  it('waits for a runner to register, then serves; the wait is in logs and metrics', async () => {
    await servedOnce('m-cold', 'cold-early')
    const s = await standIns.start('cold-late', ['m-cold'])
    const started = Date.now()
    const pending = infer('m-cold', key)
    // The request waits in the registry before the runner registers: 400 ms from when the registry holds it, not
    // from when it was sent (auth and validation come first, and take a while on a loaded machine).
    await waitForMetric(/twinserve_gateway_cold_start_waiting\{model="m-cold"\} 1/)
    await new Promise((r) => setTimeout(r, 400))
    await register(registration('cold-late', s.url, [{ name: 'm-cold' }]))
    const res = await pending
    expect(res.status, await res.clone().text()).toBe(200)
    expect(res.headers.get('x-twinserve-runner')).toBe('cold-late')
    expect(Date.now() - started).toBeGreaterThanOrEqual(350)
    const line = gatewayLogs().find(
      (l) => l.event === 'request' && l.path === '/v2/models/m-cold/infer',
    )
    expect(line?.cold_start_result).toBe('served')
    // The wait is measured in the registry, from when the request got there (after auth and validation).
    expect(Number(line?.cold_start_wait_ms)).toBeGreaterThanOrEqual(200)

    const metrics = await waitForMetric(
      /twinserve_gateway_cold_starts_total\{model="m-cold",result="served"\} 1/,
    )
    expect(metrics).toMatch(/twinserve_gateway_cold_start_wait_ms_count\{model="m-cold"\} 1/)
    await retire(['cold-late'])
  })

  it('a model no runner serves or has served is a 404 at once, naming the models there are (issue #15)', async () => {
    const started = Date.now()
    const res = await infer('m-never', key)
    const elapsed = Date.now() - started
    const body = await expectError(res, 404, 'NOT_FOUND')
    expect(body.error).toMatch(
      /model 'm-never' is not served here: no runner serves or has served it/,
    )
    expect(body.error).toMatch(/m-cold/)
    expect(elapsed).toBeLessThan(TEST_COLD_START_WAIT_MS)
    const meta = await gw('/v2/models/m-never', { headers: bearer(key) })
    expect(meta.status).toBe(404)
  })

  it('no runner within the deadline: 503 NO_RUNNER with Retry-After after the configured wait', async () => {
    await servedOnce('m-gone', 'gone-1')
    const started = Date.now()
    const res = await infer('m-gone', key)
    const elapsed = Date.now() - started
    const body = await expectError(res, 503, 'NO_RUNNER')
    expect(body.error).toMatch(/no runner holds model 'm-gone'/)
    expect(res.headers.get('retry-after')).toBe(String(TEST_COLD_START_RETRY_AFTER_S))
    expect(elapsed).toBeGreaterThanOrEqual(TEST_COLD_START_WAIT_MS - 100)
    expect(
      gatewayLogs().some((l) => l.event === 'cold_start_timeout' && l.model === 'm-gone'),
    ).toBe(true)
  })

  it('a client deadline shorter than the cold-start wait bounds the wait', async () => {
    await servedOnce('m-gone-2', 'gone-2')
    const started = Date.now()
    const res = await infer('m-gone-2', key, inferBody(), { 'x-twinserve-deadline-ms': '200' })
    expect([503, 504]).toContain(res.status)
    expect(Date.now() - started).toBeLessThan(TEST_COLD_START_WAIT_MS)
  })
})

describe('validation at the gateway (nothing malformed reaches a runner)', () => {
  it('rejects malformed requests with 4xx and never forwards them', async () => {
    const [id] = await fleet('valid', 1, 'm-valid')
    const post = (body: string | Uint8Array<ArrayBuffer>, headers: Record<string, string> = {}) =>
      gw('/v2/models/m-valid/infer', {
        method: 'POST',
        headers: { ...bearer(key), 'content-type': 'application/json', ...headers },
        body,
      })
    const cases: Array<[string, Promise<Response>, number, string, RegExp]> = [
      ['not JSON', post('{"inputs": ['), 400, 'INVALID_REQUEST', /not valid JSON/],
      ['no inputs', post('{"inputs": []}'), 400, 'INVALID_REQUEST', /inputs/],
      [
        'shape/data mismatch',
        post(
          JSON.stringify({
            inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3] }],
          }),
        ),
        400,
        'INVALID_REQUEST',
        /4 elements\) but 3/,
      ],
      [
        'wrong datatype value',
        post(
          JSON.stringify({ inputs: [{ name: 'x', shape: [1], datatype: 'INT8', data: [300] }] }),
        ),
        400,
        'INVALID_REQUEST',
        /out of range/,
      ],
      [
        'unknown merge control',
        post(JSON.stringify(inferBody([1], { experts: { a: 1 }, tpo_k: 2 }))),
        400,
        'INVALID_REQUEST',
        /tpo_k/,
      ],
      [
        'conflicting merge controls',
        post(JSON.stringify(inferBody([1], { variant: 'ties', top_k: 2 }))),
        400,
        'INVALID_REQUEST',
        /top_k/,
      ],
      [
        'unknown top-level field',
        post(JSON.stringify({ ...inferBody(), extra: 1 })),
        400,
        'INVALID_REQUEST',
        /extra/,
      ],
      [
        'wrong content type',
        post('{}', { 'content-type': 'text/plain' }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
        /application\/json/,
      ],
      [
        'oversized body',
        post(JSON.stringify(inferBody(Array(TEST_MAX_BODY_BYTES / 2).fill(1)))),
        413,
        'PAYLOAD_TOO_LARGE',
        /limit/,
      ],
      [
        // JSON over MAX_JSON_BODY_BYTES (below MAX_BODY_BYTES): refused, pointing to binary tensors (#16).
        'large JSON body',
        post(JSON.stringify(inferBody(Array(TEST_MAX_JSON_BODY_BYTES / 2).fill(1)))),
        413,
        'PAYLOAD_TOO_LARGE',
        /JSON bodies \(send large tensors as binary/,
      ],
      [
        // The same size as binary tensors is within the limit: its JSON header is what is checked.
        'large binary body with a bad header',
        post(
          new Uint8Array([
            ...new TextEncoder().encode(
              JSON.stringify({
                inputs: [
                  {
                    name: 'x',
                    shape: [1, 32768],
                    datatype: 'FP32',
                    parameters: { binary_data_size: 131072 },
                  },
                ],
                parameters: { binary_data_output: 'yes' },
              }),
            ),
            ...new Uint8Array(131072),
          ]),
          { 'content-type': 'application/octet-stream', 'inference-header-content-length': '144' },
        ),
        400,
        'INVALID_REQUEST',
        /parameters\.binary_data_output/,
      ],
      [
        'bad deadline header',
        post(JSON.stringify(inferBody()), { 'x-twinserve-deadline-ms': 'soon' }),
        400,
        'INVALID_REQUEST',
        /deadline/,
      ],
    ]
    for (const [name, pending, status, code, message] of cases) {
      const body = await expectError(await pending, status, code)
      expect(body.error, name).toMatch(message)
    }
    await expectError(
      await gw('/v2/models/Bad%20Name/infer', {
        method: 'POST',
        headers: { ...bearer(key), 'content-type': 'application/json' },
        body: JSON.stringify(inferBody()),
      }),
      400,
      'INVALID_REQUEST',
    )
    await expectError(
      await gw('/v2/models/m-valid/infer', { headers: bearer(key) }),
      405,
      'METHOD_NOT_ALLOWED',
    )
    await expectError(await gw('/v2/nothing-here'), 404, 'NOT_FOUND')
    expect((await standIns.stats(id ?? '')).infer).toBe(0)
    await retire([id ?? ''])
  })
})

/** Counters are written after the response (waitUntil): poll /metrics until `pattern` shows. */
async function waitForMetric(pattern: RegExp): Promise<string> {
  let text = ''
  for (let i = 0; i < 50; i++) {
    text = await (await gw('/metrics', { headers: bearer(TEST_ADMIN_SECRET) })).text()
    if (pattern.test(text)) return text
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`metric ${pattern} not found in:\n${text}`)
}
