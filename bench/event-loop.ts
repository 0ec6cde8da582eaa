/**
 * `npm run bench:event-loop` (issue #17, runner part): does a running batch stall the runner's event loop?
 *
 * 1. Sessions: onnxruntime-node's `session.run` called on the event loop (what the runner did before #17) against
 *    the same session in a thread of its own (gpu-runner/src/runtime/threaded-session.ts). While runs go one after
 *    another, the event loop's delay (perf_hooks.monitorEventLoopDelay) and a 5 ms interval timer's lateness are
 *    recorded. Model: a stack of MatMul [D×D] layers on X [ROWS, D] (random weights), built with GraphBuilder.
 * 2. HTTP: two `twinserve serve` processes on the BERT-base-shaped r16 package (bench/perf: built once and cached),
 *    `--session-threads on` and `off`, both batching up to 16 rows; closed-loop clients at c = 32 send single-row
 *    requests (the twin with 8 experts' weights given, and the plain shared model) while a prober calls
 *    /v2/health/ready every 25 ms. Reported: req/s, rows per run, health latency p50 / p99 / max.
 * 3. The session-level rate the HTTP numbers are held against: the same graphs run in-process at batch 16 (one run
 *    at a time, no HTTP), rows/s; measured between the HTTP rounds, so both see the same machine.
 *
 *   npm run bench:event-loop                 # writes the bench:event-loop section of bench/RESULTS.md
 *   npm run bench:event-loop -- --no-write   # prints it only
 *   options: --quick (short windows, no write)   --only sessions,http
 * @module
 */

import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { GraphBuilder } from '@twinserve/gpu-runner/onnx'
import { openSession, openThreadedSession, ort } from '@twinserve/gpu-runner/runtime'
import type { PackageManifest } from '@twinserve/shared'
import { metric, startRunner, waitIdle } from './perf/http-bench.ts'
import { closedLoop, combine, type LoadResult } from './perf/http-load.ts'
import { BERT_PACKAGES, ensureBertPackage } from './perf/packages.ts'
import { fmt, machine, markLoad, summarize, table, writeSection } from './perf/report.ts'
import {
  type CaseResult,
  exampleInputs,
  measure,
  plainCase,
  randomMix,
  SessionPool,
  twinCases,
} from './perf/session-bench.ts'

const { values } = parseArgs({
  options: {
    'no-write': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    only: { type: 'string', default: 'sessions,http' },
  },
})
const quick = values.quick
const only = new Set(values.only.split(','))
const log = (s: string) => process.stderr.write(`[event-loop] ${s}\n`)
const mach = machine()
const started = performance.now()

/** MatMul stack: layers, width, rows per run; timed runs per mode and round; rounds. */
const [LAYERS, D, ROWS] = [8, 1024, 256] as const
const [RUNS, ROUNDS] = quick ? [5, 1] : [20, 3]
/** HTTP: clients, rows per batch, window and warm-up per case (ms), rounds, health probe period (ms). */
const [CLIENTS, BATCH, WINDOW_MS, WARMUP_MS, HTTP_ROUNDS, PROBE_MS] = quick
  ? [32, 16, 8000, 3000, 1, 25]
  : [32, 16, 25_000, 5000, 2, 25]

// ---------------------------------------------------------------------------------------------- 1. sessions
function matmulStack(): Uint8Array {
  const g = new GraphBuilder('matmul_stack').input('x', 'float', ['n', D])
  let state = 1
  const uniform = () => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    return (state >>> 0) / 2 ** 32 - 0.5
  }
  let h = 'x'
  for (let l = 0; l < LAYERS; l++) {
    g.float(
      `w${l}`,
      Float32Array.from({ length: D * D }, () => uniform() * Math.sqrt(12 / D)),
      [D, D],
    )
    h = g.node('MatMul', [h, `w${l}`])
  }
  g.node('Identity', [h], { outputs: ['y'] })
  return g.output('y', 'float', ['n', D]).build()
}

interface LoopSample {
  runMs: number[]
  /** Event-loop delay percentiles over the runs (ms). */
  delayP99: number[]
  delayMax: number[]
  /** How late a 5 ms interval timer fired, worst case (ms). */
  timerLateMax: number[]
}

/** Runs `run` RUNS times back to back while watching the event loop. */
async function watchLoop(run: () => Promise<unknown>, into: LoopSample): Promise<void> {
  const h = monitorEventLoopDelay({ resolution: 1 })
  let last = performance.now()
  let late = 0
  const timer = setInterval(() => {
    const now = performance.now()
    late = Math.max(late, now - last - 5)
    last = now
  }, 5)
  h.enable()
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now()
    await run()
    into.runMs.push(performance.now() - t)
  }
  h.disable()
  clearInterval(timer)
  into.delayP99.push(h.percentile(99) / 1e6)
  into.delayMax.push(h.max / 1e6)
  into.timerLateMax.push(late)
}

const loop = {
  inline: { runMs: [], delayP99: [], delayMax: [], timerLateMax: [] } as LoopSample,
  thread: { runMs: [], delayP99: [], delayMax: [], timerLateMax: [] } as LoopSample,
}
if (only.has('sessions')) {
  log(
    `sessions: ${LAYERS} × MatMul [${D}×${D}] on X [${ROWS}, ${D}], on the event loop vs in a thread`,
  )
  const model = matmulStack()
  const inline = (await openSession(model, { provider: 'cpu' })).session
  const thread = (await openThreadedSession(model, { provider: 'cpu' })).session
  const feeds = {
    x: new ort.Tensor(
      'float32',
      Float32Array.from({ length: ROWS * D }, (_, i) => Math.sin(i)),
      [ROWS, D],
    ),
  }
  await inline.run(feeds)
  await thread.run(feeds)
  for (let round = 0; round < ROUNDS; round++)
    for (const mode of round % 2 === 0
      ? (['inline', 'thread'] as const)
      : (['thread', 'inline'] as const))
      await watchLoop(() => (mode === 'inline' ? inline : thread).run(feeds), loop[mode])
  await Promise.all([inline.release(), thread.release()])
}
markLoad(mach, 'after sessions')

// ---------------------------------------------------------------------------------------------- 2./3. HTTP
interface HttpCell {
  windows: LoadResult[]
  health: number[]
  /** Probes that got no 200 answer. */
  healthFailed: number
  rows: number
  runs: number
}
type Mode = 'on' | 'off'
type CaseKey = 'twin' | 'plain'
const http = new Map<string, HttpCell>()
const cell = (k: CaseKey, m: Mode) => {
  const id = `${k}|${m}`
  let c = http.get(id)
  if (!c) {
    c = { windows: [], health: [], healthFailed: 0, rows: 0, runs: 0 }
    http.set(id, c)
  }
  return c
}
const sessionSamples: CaseResult[][] = []
let manifest: PackageManifest | undefined

/**
 * Calls /v2/health/ready every PROBE_MS (each probe on its own, not waiting for the last), from `afterMs` on (the
 * load's warm-up is not measured) until stopped.
 */
function healthProber(
  url: string,
  afterMs: number,
): { stop: () => Promise<{ latencies: number[]; failed: number }> } {
  const latencies: number[] = []
  let failed = 0
  const inflight = new Set<Promise<void>>()
  let timer: ReturnType<typeof setInterval> | undefined
  const probe = () => {
    const t = performance.now()
    const p: Promise<void> = fetch(`${url}/v2/health/ready`)
      .then(async (r) => {
        await r.arrayBuffer()
        if (r.status !== 200) failed++
        else latencies.push(performance.now() - t)
      })
      // No answer at all (the client's 10 s connect timeout while the event loop is blocked): a failed probe.
      .catch(() => {
        failed++
      })
      .finally(() => inflight.delete(p))
    inflight.add(p)
  }
  const delay = setTimeout(() => {
    timer = setInterval(probe, PROBE_MS)
  }, afterMs)
  return {
    async stop() {
      clearTimeout(delay)
      clearInterval(timer)
      await Promise.all(inflight)
      return { latencies, failed }
    },
  }
}

if (only.has('http')) {
  const r16 = await ensureBertPackage(BERT_PACKAGES.r16, { reuseStale: true, log })
  manifest = (await import(join(r16.dir, 'manifest.json'), { with: { type: 'json' } }))
    .default as PackageManifest
  const m = manifest
  const common = [
    ...['--provider', 'cpu', '--threads', String(mach.nproc), '--max-batch-size', String(BATCH)],
    ...['--max-queue', '4096', '--request-timeout-ms', '300000'],
  ]
  log('http: starting runners (session threads on and off)')
  const runners = {
    on: await startRunner('threads on', [r16.dir], [...common, '--session-threads', 'on']),
    off: await startRunner('threads off', [r16.dir], [...common, '--session-threads', 'off']),
  }
  const T = m.experts.length
  const mixWeights = randomMix(T, T, 3)
  const mix = Object.fromEntries(
    m.experts.map((e) => [e.name, Math.round((mixWeights[e.index] ?? 0) * 1e4) / 1e4]),
  )
  const inputs = Array.from({ length: 8 }, (_, i) =>
    JSON.stringify(
      Object.entries(exampleInputs(m.inputs, 1, 100 + i)).map(([name, t]) => ({
        name,
        shape: [...t.dims],
        datatype: 'INT64',
        data: Array.from(t.data as BigInt64Array, (v) => Number(v)),
      })),
    ),
  )
  let n = 0
  const params: Record<CaseKey, string> = {
    twin: JSON.stringify({ experts: mix }),
    plain: JSON.stringify({ variant: 'shared' }),
  }
  const body = (k: CaseKey) => () =>
    `{"inputs":${inputs[n++ % inputs.length]},"parameters":${params[k]}}`

  const pool = new SessionPool('cpu')
  const sessionCases = [
    ...(await twinCases(pool, r16.dir, m, BATCH, [
      { key: 'twin', label: 'r16 dense, weights given', mix: mixWeights },
    ])),
    await plainCase(pool, r16.dir, m, BATCH),
  ]
  try {
    // Untimed first pass on each runner: JIT, the sessions' first-run allocations.
    for (const k of ['twin', 'plain'] as const)
      for (const mode of ['on', 'off'] as const) {
        await waitIdle(runners[mode].url)
        await closedLoop({
          url: runners[mode].url,
          path: `/v2/models/${m.name}/infer`,
          body: body(k),
          concurrency: 2,
          durationMs: quick ? 2000 : 5000,
          warmupMs: 0,
        })
      }
    for (let round = 0; round < HTTP_ROUNDS; round++) {
      log(`round ${round + 1}: sessions at batch ${BATCH}`)
      sessionSamples.push(
        await measure(sessionCases, {
          warmup: round === 0 ? 1 : 0,
          rounds: 1,
          perRound: quick ? 2 : 5,
        }),
      )
      for (const k of ['twin', 'plain'] as const)
        for (const mode of round % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
          const runner = runners[mode]
          log(`round ${round + 1}: http ${k}, session threads ${mode}`)
          await waitIdle(runner.url)
          const series = `{model="${m.name}"}`
          const rows0 = await metric(runner.url, `twinserve_runner_batch_rows_sum${series}`)
          const runs0 = await metric(runner.url, `twinserve_runner_batch_rows_count${series}`)
          const prober = healthProber(runner.url, WARMUP_MS)
          const result = await closedLoop({
            url: runner.url,
            path: `/v2/models/${m.name}/infer`,
            body: body(k),
            concurrency: CLIENTS,
            durationMs: WINDOW_MS,
            warmupMs: WARMUP_MS,
          })
          const health = await prober.stop()
          await waitIdle(runner.url)
          const c = cell(k, mode)
          c.windows.push(result)
          c.health.push(...health.latencies)
          c.healthFailed += health.failed
          c.rows += (await metric(runner.url, `twinserve_runner_batch_rows_sum${series}`)) - rows0
          c.runs += (await metric(runner.url, `twinserve_runner_batch_rows_count${series}`)) - runs0
        }
    }
  } finally {
    await Promise.all([runners.on.stop(), runners.off.stop(), pool.release()])
  }
}
markLoad(mach, 'end')

// ---------------------------------------------------------------------------------------------- report
const minutes = (performance.now() - started) / 60_000
const worst = (xs: number[]) => (xs.length ? Math.max(...xs) : Number.NaN)
const p50 = (xs: number[]) => summarize(xs).p50
const lines: string[] = [
  '## The event loop while batches run (`npm run bench:event-loop`, issue #17)',
  '',
  `- **Command:** \`npm run bench:event-loop${quick ? ' -- --quick' : ''}\` (bench/event-loop.ts, ${fmt(minutes, 1)} min), ${new Date().toISOString().slice(0, 10)}.`,
  `- **Machine:** ${mach.nproc} cores, ${mach.cpu}, ${mach.memGb} GB; Node ${mach.node}; onnxruntime-node ${mach.ort}; CPU provider, ${mach.nproc} intra-op threads per session, no spinning; 1-minute load average ${mach.loads.map((l) => `${l.phase} ${fmt(l.load, 2)}`).join(', ')} (a shared machine: other jobs ran too).`,
]
if (only.has('sessions')) {
  const row = (label: string, s: LoopSample) => [
    label,
    fmt(p50(s.runMs), 1),
    fmt(worst(s.delayP99), 1),
    fmt(worst(s.delayMax), 1),
    fmt(worst(s.timerLateMax), 1),
  ]
  lines.push(
    '',
    `### Sessions: ${LAYERS} × MatMul [${D}×${D}] on X [${ROWS}, ${D}] (${fmt((2 * LAYERS * ROWS * D * D) / 1e9, 1)} GFLOP per run)`,
    '',
    `${ROUNDS} interleaved rounds of ${RUNS} back-to-back runs per mode; the event loop's delay (monitorEventLoopDelay, 1 ms resolution) and a 5 ms interval timer's lateness while they run (worst round).`,
    '',
    table(
      [
        'session',
        'run p50, ms',
        'loop delay p99, ms',
        'loop delay max, ms',
        '5 ms timer late by (max), ms',
      ],
      [
        row('`session.run` on the event loop (before #17)', loop.inline),
        row('the same session in its own thread (the runner now)', loop.thread),
      ],
    ),
    '',
    "onnxruntime-node 1.30's `run()` returns a promise but executes synchronously on the calling thread (its backend defers the call with one `setImmediate`, then blocks): on the event loop, the loop stalls for the whole run. In a thread, the loop stays free; the run costs the hand-over of feeds and outputs on top.",
  )
}
if (only.has('http') && manifest) {
  const sess = (key: string) => {
    const all = sessionSamples.flatMap((r) => r.filter((c) => c.key === key))
    const mean =
      all.reduce((a, c) => a + c.mean * c.n, 0) /
      Math.max(
        1,
        all.reduce((a, c) => a + c.n, 0),
      )
    return (1000 * BATCH) / mean
  }
  const rows: string[][] = []
  const verdicts: string[] = []
  for (const k of ['twin', 'plain'] as const) {
    const sessionRate = sess(k)
    for (const mode of ['on', 'off'] as const) {
      const c = http.get(`${k}|${mode}`)
      if (!c) continue
      const r = combine(c.windows)
      const h = summarize(c.health)
      rows.push([
        `${k === 'twin' ? 'r16 twin, 8 experts given' : 'plain shared model'}, session threads ${mode}`,
        fmt(r.rps, 1),
        fmt(c.runs ? c.rows / c.runs : Number.NaN, 1),
        fmt(sessionRate, 1),
        `${fmt(r.rps / sessionRate, 2)}×`,
        `${fmt(h.p50, 1)} / ${fmt(h.p99, 1)} / ${fmt(worst(c.health), 0)}`,
        `${h.n}${c.healthFailed ? `, ${c.healthFailed} unanswered` : ''}`,
      ])
      if (mode === 'on')
        verdicts.push(
          `- ${k === 'twin' ? 'Twin' : 'Plain'}, threads on: health p99 ${fmt(h.p99, 1)} ms (goal ≤ 20 ms: ${h.p99 <= 20 ? 'met' : '**missed**'}); HTTP ${fmt(r.rps / sessionRate, 2)}× the session rate (goal ≥ 0.9×: ${r.rps / sessionRate >= 0.9 ? 'met' : '**missed**'}).`,
        )
    }
  }
  const rate = (k: CaseKey, mode: Mode) => {
    const c = http.get(`${k}|${mode}`)
    return c ? combine(c.windows).rps : Number.NaN
  }
  lines.push(
    '',
    `### HTTP: \`twinserve serve\` on the BERT-base-shaped r16 package, c = ${CLIENTS}, batches of up to ${BATCH}`,
    '',
    `Closed-loop clients send single-row requests for ${WINDOW_MS / 1000} s windows (after ${WARMUP_MS / 1000} s of warm-up), ${HTTP_ROUNDS} interleaved rounds; a prober calls /v2/health/ready every ${PROBE_MS} ms during each measured window. Each runner had an untimed first pass per case. "Session rows/s" is the same graph run in-process at batch ${BATCH}, one run at a time, measured between the HTTP rounds.`,
    '',
    table(
      [
        'case',
        'HTTP req/s',
        'rows/run',
        `session rows/s (batch ${BATCH})`,
        'HTTP ÷ session',
        'health p50 / p99 / max, ms',
        'probes',
      ],
      rows,
    ),
    '',
    ...verdicts,
    `- Twin ÷ plain: HTTP ${fmt(rate('twin', 'on') / rate('plain', 'on'), 2)}× with threads on (${fmt(rate('twin', 'off') / rate('plain', 'off'), 2)}× off), session ${fmt(sess('twin') / sess('plain'), 2)}×.`,
  )
}
const md = lines.join('\n')
if (!values['no-write'] && !quick)
  await writeSection(join(import.meta.dirname, 'RESULTS.md'), 'bench:event-loop', md)
process.stdout.write(`${md}\n`)
