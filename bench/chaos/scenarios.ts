/**
 * The chaos scenarios of issue #16, each against the real gateway (workerd, bare or under wrangler dev) and real
 * runner processes on the demo package, under closed-loop load (load.ts). Each returns one table row: requests
 * sent, requests that failed, what was measured, and whether the scenario's goal held.
 * @module
 */
import { writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type E2eGateway, startGatewayRunner } from '../../test/support/gateway-harness.ts'
import type { RunnerProcess } from '../../test/support/runner-harness.ts'
import { binaryPixelsBody, hostileCases, pixelsBody } from './hostile.ts'
import { Load, type LoadOptions, quantile, type Sample, send, sleep } from './load.ts'

export interface Row {
  scenario: string
  requests: number
  failed: number
  measured: string
  goal: string
  pass: boolean
}

export interface Fleet {
  gw: E2eGateway
  key: string
  model: string
  pkg: string
  runners: Map<string, RunnerProcess>
  /** Steady-state p99 (ms) of one request, measured by the baseline scenario. */
  p99: number
  /** The baseline's own tail: how many of its requests took over 2 × its p99 (the control for the hang scenario). */
  baselineOver2p99: { over: number; of: number }
  heartbeatMs: number
  coldStartWaitMs: number
  bodyTimeoutMs: number
}

const BODY = JSON.stringify(pixelsBody(0.5))
const ok = (s: Sample) => s.status === 200
/** The error code of a shared-table error body, else its start (request ids would make every body unique). */
const cause = (error = '?') => {
  try {
    return String((JSON.parse(error) as { code?: unknown }).code ?? error.slice(0, 80))
  } catch {
    return error.slice(0, 80)
  }
}
const describe = (samples: readonly Sample[]) => {
  const by = new Map<string, number>()
  for (const s of samples) {
    const k =
      s.status === 0 || s.status >= 500 ? `${s.status} (${cause(s.error)})` : String(s.status)
    by.set(k, (by.get(k) ?? 0) + 1)
  }
  return [...by].map(([k, n]) => `${n}×${k}`).join(', ')
}

export const loadOptions = (f: Fleet, extra: Partial<LoadOptions> = {}): LoadOptions => ({
  url: f.gw.url,
  key: f.key,
  model: f.model,
  body: BODY,
  concurrency: 4,
  hangMs: 30_000,
  ...extra,
})

/** (Re)starts runner `id` and waits until the gateway has acknowledged its registration. */
export async function startRunner(f: Fleet, id: string): Promise<void> {
  // A shared, busy machine can take well over the tests' 30 s to load onnxruntime and the package.
  const r = await startGatewayRunner(f.gw, {
    packages: [f.pkg],
    runnerId: id,
    startTimeoutMs: 120_000,
  })
  f.runners.set(id, r)
}

/** Load for `beforeMs`, then `act`, then load for `afterMs`: every sample. */
async function underLoad(f: Fleet, beforeMs: number, act: () => Promise<void>, afterMs: number) {
  const load = new Load(loadOptions(f))
  load.start()
  await sleep(beforeMs)
  const t = Date.now()
  await act()
  await sleep(afterMs)
  await load.stop()
  return { samples: load.samples, actedAt: t }
}

export async function baseline(f: Fleet): Promise<Row> {
  const { samples } = await underLoad(f, 8000, async () => undefined, 0)
  f.p99 = quantile(samples.filter(ok), 0.99)
  f.baselineOver2p99 = {
    over: samples.filter((s) => s.end - s.start > 2 * f.p99).length,
    of: samples.length,
  }
  const failed = samples.filter((s) => !ok(s))
  return {
    scenario: 'baseline (2 runners)',
    requests: samples.length,
    failed: failed.length,
    measured: `p50 ${quantile(samples, 0.5)} ms, p99 ${f.p99} ms`,
    goal: '0 failed',
    pass: failed.length === 0,
  }
}

export async function kill(f: Fleet): Promise<Row> {
  const { samples } = await underLoad(
    f,
    3000,
    async () => {
      f.runners.get('a')?.child.kill('SIGKILL')
    },
    7000,
  )
  await startRunner(f, 'a')
  const failed = samples.filter((s) => !ok(s))
  return {
    scenario: 'kill (SIGKILL one runner)',
    requests: samples.length,
    failed: failed.length,
    measured: failed.length ? describe(failed) : `p99 ${quantile(samples, 0.99)} ms`,
    goal: '0 failed',
    pass: failed.length === 0,
  }
}

export async function hang(f: Fleet, freezeMs = 15_000, trace = false): Promise<Row> {
  const b = f.runners.get('b')
  let frozenAt = 0
  const { samples } = await underLoad(
    f,
    3000,
    async () => {
      frozenAt = Date.now()
      b?.child.kill('SIGSTOP')
      await sleep(freezeMs)
      b?.child.kill('SIGCONT')
    },
    5000,
  )
  const failed = samples.filter((s) => !ok(s))
  const during = samples.filter((s) => s.end > frozenAt && s.start < frozenAt + freezeMs)
  const worst = Math.max(...during.map((s) => s.end - s.start))
  const bound = 2 * f.p99
  const slowOnes = during.filter((s) => s.end - s.start > bound)
  const slow = slowOnes.length
  // Which requests the frozen runner held: those with an attempt (not a hedge) sent to it, from the gateway's
  // route trace (the chaos gateway always runs with ROUTE_TRACE=1). The goal is about them: "no request waits more
  // than 2× the runner's p99 because of a hung peer". The others went to the healthy runner alone, which carries
  // the whole load during the freeze; their tail is that runner's queueing at twice its load (no routing can
  // remove it), shown next to the baseline's own tail as the control.
  const traced = during.filter((s) => s.trace !== undefined)
  if (traced.length < during.length)
    throw new Error(
      `hang: ${during.length - traced.length} answers had no route trace (is ROUTE_TRACE on?)`,
    )
  const held = during.filter((s) => s.trace?.includes('attempt b '))
  const heldSlow = held.filter((s) => s.end - s.start > bound)
  const heldWorst = Math.max(0, ...held.map((s) => s.end - s.start))
  if (trace) {
    for (const s of slowOnes)
      process.stderr.write(
        `hang: slow ${s.end - s.start} ms at +${s.start - frozenAt} ms (runner ${s.runner}): ${s.trace}\n`,
      )
    const file = join(tmpdir(), `chaos-hang-${process.pid}.json`)
    await writeFile(file, JSON.stringify({ frozenAt, freezeMs, p99: f.p99, during }))
    process.stderr.write(`hang: the freeze's requests with their traces: ${file}\n`)
  }
  const control = f.baselineOver2p99
  return {
    scenario: `hang (SIGSTOP one runner ${freezeMs / 1000} s)`,
    requests: samples.length,
    failed: failed.length,
    measured:
      `${failed.length ? `${describe(failed)}; ` : ''}held by the frozen runner (first attempt sent there): ` +
      `${held.length}, max ${heldWorst} ms, ${heldSlow.length} over 2×p99 = ${bound} ms; every request of the freeze: ` +
      `max ${worst} ms, ${slow} of ${during.length} over 2×p99 (baseline with both runners up: ${control.over} of ` +
      `${control.of})`,
    goal: '0 failed; none held by the hung peer waits > 2× p99',
    pass: failed.length === 0 && heldSlow.length === 0,
  }
}

export async function drain(f: Fleet): Promise<Row> {
  const { samples } = await underLoad(
    f,
    3000,
    async () => {
      await f.runners.get('a')?.stop('SIGTERM', 30_000)
    },
    4000,
  )
  await startRunner(f, 'a')
  const failed = samples.filter((s) => !ok(s))
  return {
    scenario: 'drain (SIGTERM one runner)',
    requests: samples.length,
    failed: failed.length,
    measured: failed.length ? describe(failed) : `p99 ${quantile(samples, 0.99)} ms`,
    goal: '0 failed',
    pass: failed.length === 0,
  }
}

/** Every runner drained away: each request gets 503 + Retry-After after the cold-start wait, then a cold start. */
export async function allGone(f: Fleet): Promise<Row> {
  await Promise.all([...f.runners.values()].map((r) => r.stop('SIGTERM', 30_000)))
  f.runners.clear()
  const o = loadOptions(f, { hangMs: f.coldStartWaitMs + 10_000 })
  const samples = await Promise.all(Array.from({ length: 8 }, () => send(o)))
  const bad = samples.filter((s) => s.status !== 503 || !s.retryAfter)
  const worst = Math.max(...samples.map((s) => s.end - s.start))
  // A cold start: from starting two runners to the first request served (sent again while refused).
  const t = Date.now()
  const starting = Promise.all([startRunner(f, 'a'), startRunner(f, 'b')])
  let first: Sample | undefined
  let refused = 0
  while (!first && Date.now() - t < 120_000) {
    const s = await send(o)
    if (ok(s)) first = s
    else refused += s.status === 503 && s.retryAfter ? 1 : 0
  }
  await starting
  return {
    scenario: 'all runners gone',
    requests: samples.length,
    failed: bad.length,
    measured: `${describe(samples)} (Retry-After ${samples[0]?.retryAfter}), slowest ${worst} ms; cold start: first 200 ${first ? first.end - t : 'never'} ms after starting two runners (${refused} more 503 + Retry-After before)`,
    goal: '503 + Retry-After every time, no hang, no 500',
    pass: bad.length === 0 && worst < f.coldStartWaitMs + 5000 && first !== undefined,
  }
}

/** The gateway process stopped and started again (same state directory): the same key serves within a heartbeat. */
export async function gatewayRestart(f: Fleet): Promise<Row> {
  let upAt = 0
  const { samples } = await underLoad(
    f,
    3000,
    async () => {
      await f.gw.restart()
      upAt = Date.now()
    },
    f.heartbeatMs + 3000,
  )
  const after = samples.filter((s) => s.start >= upAt)
  const firstOk = after.find(ok)
  const recovery = firstOk ? firstOk.end - upAt : Number.POSITIVE_INFINITY
  const failedAfter = after.filter((s) => s.start > upAt + f.heartbeatMs && !ok(s))
  return {
    scenario: 'gateway restart',
    requests: samples.length,
    failed: failedAfter.length,
    measured: `${samples.filter((s) => s.status === 0).length} refused while it was down; first 200 ${recovery} ms after it was up (same key)`,
    goal: `recovery within one heartbeat (${f.heartbeatMs} ms)`,
    pass: recovery <= f.heartbeatMs && failedAfter.length === 0,
  }
}

/** 48 clients on a key limited to 20 req/s: shed with 429 (or 503 + Retry-After), never a 500 or a hang. */
export async function overload(f: Fleet): Promise<Row> {
  const res = await fetch(`${f.gw.url}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${f.gw.admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      tenant: 'chaos-overload',
      scopes: ['infer'],
      models: [f.model],
      rate_limit: { requests_per_second: 20, burst: 20 },
    }),
  })
  const key = ((await res.json()) as { key: string }).key
  const load = new Load(loadOptions(f, { key, concurrency: 48, hangMs: 20_000 }))
  load.start()
  await sleep(8000)
  await load.stop()
  const shed = (s: Sample) => s.status === 429 || (s.status === 503 && s.retryAfter !== null)
  const failed = load.samples.filter((s) => !ok(s) && !shed(s))
  return {
    scenario: 'overload (48 clients, key at 20 req/s)',
    requests: load.samples.length,
    failed: failed.length,
    measured: describe(load.samples),
    goal: 'shed with 429/503 + Retry-After; no 500, no hang',
    pass: failed.length === 0,
  }
}

/** A raw POST sending `bytes` announced bytes at 5 bytes/s: its status and when it came. */
function trickle(url: string, model: string, key: string, limitMs: number) {
  return new Promise<{ status: number | 'no answer'; ms: number }>((resolve) => {
    const t = Date.now()
    const u = new URL(`${url}/v2/models/${model}/infer`)
    const body = Buffer.from(BODY)
    const req = request({
      host: u.hostname,
      port: u.port,
      path: u.pathname,
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        'content-length': body.length,
      },
    })
    // Headers now, so the gateway's body deadline and this clock start together (Node sends them with the
    // first write otherwise, a second later).
    req.flushHeaders()
    let sent = 0
    const drip = setInterval(() => {
      if (sent < body.length) req.write(body.subarray(sent, sent + 5))
      sent += 5
    }, 1000)
    const done = (status: number | 'no answer') => {
      clearInterval(drip)
      clearTimeout(timer)
      req.destroy()
      resolve({ status, ms: Date.now() - t })
    }
    const timer = setTimeout(() => done('no answer'), limitMs)
    req.on('response', (res) => {
      res.resume()
      done(res.statusCode ?? 0)
    })
    req.on('error', () => done('no answer'))
  })
}

/** Slow bodies (408 within the body deadline) and huge ones (413 over the limit; a ~9 MB batch served). */
export async function slowAndHuge(f: Fleet, maxBodyBytes: number): Promise<Row> {
  const load = new Load(loadOptions(f, { concurrency: 2 }))
  load.start()
  const limit = f.bodyTimeoutMs + 10_000
  const slow = await Promise.all(
    Array.from({ length: 6 }, () => trickle(f.gw.url, f.model, f.key, limit)),
  )
  const huge = await send(loadOptions(f, { body: 'x'.repeat(maxBodyBytes + 1), hangMs: 30_000 }))
  // Big valid batches, each sent after the connections idled past the old keep-alive race (5–6 s): JSON just
  // under the gateway's JSON cap (MAX_JSON_BODY_BYTES, 4 MiB: JSON is parsed into JS numbers in the isolate), and
  // ~10 MB as binary tensors (forwarded as bytes, only MAX_BODY_BYTES applies), as a client with a big batch sends it.
  const bigJson = JSON.stringify(pixelsBody(0.5, 2000))
  const bigBinary = binaryPixelsBody(0.5, 3300)
  const bigs: Sample[] = []
  for (const big of [bigJson, bigBinary.body, bigBinary.body]) {
    await sleep(6000)
    const headers = typeof big === 'string' ? {} : bigBinary.headers
    bigs.push(await send(loadOptions(f, { body: big, headers, hangMs: 30_000 })))
  }
  await load.stop()
  const slowBad = slow.filter((s) => s.status !== 408 || s.ms > f.bodyTimeoutMs + 3000)
  const failed = slowBad.length + (huge.status === 413 ? 0 : 1) + bigs.filter((s) => !ok(s)).length
  const others = load.samples.filter((s) => !ok(s)).length
  return {
    scenario: 'slow and huge bodies',
    requests: slow.length + 1 + bigs.length + load.samples.length,
    failed: failed + others,
    measured: `trickled (5 B/s): ${slow.map((s) => `${s.status} in ${s.ms} ms`).join(', ')}; ${maxBodyBytes + 1} B: ${huge.status}; ${(bigJson.length / 1e6).toFixed(1)} MB JSON + 2 × ${(bigBinary.body.length / 1e6).toFixed(1)} MB binary batches after 6 s idle: ${describe(bigs)}; other traffic: ${describe(load.samples)}`,
    goal: `408 within the body deadline (${f.bodyTimeoutMs} ms); 413; big batch 200`,
    pass: failed + others === 0,
  }
}

/** Tenant A's hostile requests while tenant B's load runs: held/failed per case, B never refused. */
export async function hostile(f: Fleet): Promise<{ row: Row; cases: string[] }> {
  const keyA = await f.gw.createKey([f.model], 'chaos-a')
  const load = new Load(loadOptions(f, { concurrency: 2 }))
  load.start()
  const results = await hostileCases(
    f.gw,
    keyA,
    f.model,
    [...f.runners.values()].map((r) => r.url),
  )
  await load.stop()
  const held = results.filter((r) => r.held).length
  const bFailed = load.samples.filter((s) => !ok(s))
  const failedCases = results.filter((r) => !r.held)
  return {
    row: {
      scenario: 'hostile tenant A (issue #16 cases)',
      requests: results.length + load.samples.length,
      failed: failedCases.length + bFailed.length,
      measured: `A: ${held} of ${results.length} cases held; B: ${load.samples.length - bFailed.length} of ${load.samples.length} served`,
      goal: 'every case held; B served throughout',
      pass: failedCases.length === 0 && bFailed.length === 0,
    },
    cases: results.map((r) => `${r.held ? 'held  ' : 'FAILED'} ${r.status}  ${r.what}`),
  }
}
