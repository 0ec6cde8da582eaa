/**
 * `npm run bench:event-loop` (issue #17, runner part): does a running batch stall the runner's event loop?
 *
 * 1. Sessions: onnxruntime-node's `session.run` called on the event loop (what the runner did before #17) against
 *    the same session in a thread of its own (gpu-runner/src/runtime/threaded-session.ts), at the event loop's
 *    priority and 10 nice steps below it (`lowerPriority`, the runner's `--session-nice`). While runs go one after
 *    another, the event loop's delay (perf_hooks.monitorEventLoopDelay) and a 5 ms interval timer's lateness are
 *    recorded. Model: a stack of MatMul [D×D] layers on X [ROWS, D] (random weights), built with GraphBuilder.
 * 2. HTTP: one `twinserve serve` process per arm (`--arms`, below) on the BERT-base-shaped r16 package
 *    (bench/perf: built once and cached), all batching up to 16 rows; closed-loop clients at c = 32 send
 *    single-row requests (the twin with 8 experts' weights given, and the plain shared model) while a prober calls
 *    /v2/health/ready every 25 ms. Arms and cases are interleaved within each round, their order reversed every
 *    other round. Reported: req/s, rows per run, health latency p50 / p99 / max.
 * 3. The session-level rate the HTTP numbers are held against: the same graphs run in-process at batch 16 (one run
 *    at a time, no HTTP), rows/s; measured between the HTTP rounds, so both see the same machine.
 *
 * Arms (`--arms`, comma-separated; default nice,flat,cores-1):
 *   nice     session threads 10 nice steps below the event loop (`--session-nice 10`, the runner's default)
 *   flat     session threads at the event loop's priority (`--session-nice 0`, the runner before this arm)
 *   cores-1  session threads at the event loop's priority, one intra-op thread fewer than the cores
 *            (`--threads <nproc - 1>`): a core left to the event loop instead of a priority
 *   off      sessions on the event loop (`--session-threads off`, before #17; its health probes wait seconds)
 *
 *   npm run bench:event-loop                           # writes both sections of bench/RESULTS.md
 *   npm run bench:event-loop -- --only http            # the HTTP arms alone (about 5 min; --arms nice,flat: 3.5)
 *   npm run bench:event-loop -- --no-write             # prints only
 *   options: --quick (short windows, no write)   --only sessions,http   --arms nice,flat,cores-1,off
 * Each part writes its own section (between its markers) and leaves the other as it was.
 * @module
 */

import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { GraphBuilder } from '@twinserve/gpu-runner/onnx'
import { openSession, openThreadedSession, ort } from '@twinserve/gpu-runner/runtime'
import type { PackageManifest } from '@twinserve/shared'
import { metric, type RunnerHandle, startRunner, waitIdle } from './perf/http-bench.ts'
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
    arms: { type: 'string', default: 'nice,flat,cores-1' },
  },
})
const quick = values.quick
const only = new Set(values.only.split(','))
for (const part of only)
  if (part !== 'sessions' && part !== 'http')
    throw new Error(`--only: unknown part '${part}' (sessions, http)`)
const log = (s: string) => process.stderr.write(`[event-loop] ${s}\n`)
const mach = machine()
const started = performance.now()

/** MatMul stack: layers, width, rows per run; timed runs per mode and round; rounds. */
const [LAYERS, D, ROWS] = [8, 1024, 256] as const
const [RUNS, ROUNDS] = quick ? [5, 1] : [20, 3]
/** HTTP: clients, rows per batch, window and warm-up per case (ms), rounds, health probe period (ms). */
const [CLIENTS, BATCH, WINDOW_MS, WARMUP_MS, HTTP_ROUNDS, PROBE_MS] = quick
  ? [32, 16, 8000, 3000, 1, 25]
  : [32, 16, 15_000, 3000, 2, 25]
/** Nice steps of the `nice` arm and of the lowered session thread (the runner's default `--session-nice`). */
const NICE = 10

/** The runner configurations the HTTP part compares: `twinserve serve` flags on top of the common ones. */
const ARMS = {
  nice: {
    label: `session threads, nice +${NICE} (the default)`,
    args: [
      '--session-threads',
      'on',
      '--session-nice',
      String(NICE),
      '--threads',
      String(mach.nproc),
    ],
  },
  flat: {
    label: 'session threads, nice +0',
    args: ['--session-threads', 'on', '--session-nice', '0', '--threads', String(mach.nproc)],
  },
  'cores-1': {
    label: `session threads, nice +0, ${Math.max(1, mach.nproc - 1)} intra-op thread${mach.nproc - 1 > 1 ? 's' : ''}`,
    args: [
      ...['--session-threads', 'on', '--session-nice', '0'],
      ...['--threads', String(Math.max(1, mach.nproc - 1))],
    ],
  },
  off: {
    label: 'sessions on the event loop (before #17)',
    args: ['--session-threads', 'off', '--threads', String(mach.nproc)],
  },
} as const
type Arm = keyof typeof ARMS
const arms = values.arms.split(',').map((a) => {
  if (!(a in ARMS)) throw new Error(`--arms: unknown arm '${a}' (${Object.keys(ARMS).join(', ')})`)
  return a as Arm
})

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

const emptySample = (): LoopSample => ({ runMs: [], delayP99: [], delayMax: [], timerLateMax: [] })
/** Where the session runs: on the event loop, in a thread at its priority, in a thread NICE steps below it. */
const SESSION_MODES = ['inline', 'thread', 'niced'] as const
type SessionMode = (typeof SESSION_MODES)[number]
const loop: Record<SessionMode, LoopSample> = {
  inline: emptySample(),
  thread: emptySample(),
  niced: emptySample(),
}
let nicedNote: string | undefined
if (only.has('sessions')) {
  log(
    `sessions: ${LAYERS} × MatMul [${D}×${D}] on X [${ROWS}, ${D}], on the event loop vs in a thread (nice +0, +${NICE})`,
  )
  const model = matmulStack()
  const sessions = {
    inline: (await openSession(model, { provider: 'cpu' })).session,
    thread: (await openThreadedSession(model, { provider: 'cpu' })).session,
    niced: await openThreadedSession(model, { provider: 'cpu', lowerPriority: NICE }).then((o) => {
      nicedNote = o.priority.note
      return o.session
    }),
  }
  const feeds = {
    x: new ort.Tensor(
      'float32',
      Float32Array.from({ length: ROWS * D }, (_, i) => Math.sin(i)),
      [ROWS, D],
    ),
  }
  for (const mode of SESSION_MODES) await sessions[mode].run(feeds)
  for (let round = 0; round < ROUNDS; round++)
    for (const mode of round % 2 === 0 ? SESSION_MODES : [...SESSION_MODES].reverse())
      await watchLoop(() => sessions[mode].run(feeds), loop[mode])
  await Promise.all(SESSION_MODES.map((mode) => sessions[mode].release()))
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
type CaseKey = 'twin' | 'plain'
const http = new Map<string, HttpCell>()
const cell = (k: CaseKey, m: Arm) => {
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
/** Each arm's runner as it reported itself at start (session_nice and its note, if any). */
const armNotes = new Map<Arm, string>()

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
    ...['--provider', 'cpu', '--max-batch-size', String(BATCH)],
    ...['--max-queue', '4096', '--request-timeout-ms', '300000'],
  ]
  log(`http: starting runners (${arms.join(', ')})`)
  const runners = new Map<Arm, RunnerHandle>()
  for (const arm of arms) {
    const r = await startRunner(arm, [r16.dir], [...common, ...ARMS[arm].args]).catch(
      async (err: unknown) => {
        await Promise.all([...runners.values()].map((started) => started.stop()))
        throw err
      },
    )
    runners.set(arm, r)
    const note = r.listening.session_nice_note
    armNotes.set(
      arm,
      `session_nice ${String(r.listening.session_nice)}${typeof note === 'string' ? ` (${note})` : ''}`,
    )
  }
  const runnerOf = (arm: Arm): RunnerHandle => {
    const r = runners.get(arm)
    if (!r) throw new Error(`no runner for arm '${arm}'`)
    return r
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
      for (const arm of arms) {
        await waitIdle(runnerOf(arm).url)
        await closedLoop({
          url: runnerOf(arm).url,
          path: `/v2/models/${m.name}/infer`,
          body: body(k),
          concurrency: 2,
          durationMs: quick ? 2000 : 3000,
          warmupMs: 0,
        })
      }
    for (let round = 0; round < HTTP_ROUNDS; round++) {
      log(`round ${round + 1}: sessions at batch ${BATCH}`)
      sessionSamples.push(
        await measure(sessionCases, {
          warmup: round === 0 ? 1 : 0,
          rounds: 1,
          perRound: quick ? 2 : 3,
        }),
      )
      for (const k of ['twin', 'plain'] as const)
        for (const arm of round % 2 === 0 ? arms : [...arms].reverse()) {
          const runner = runnerOf(arm)
          log(`round ${round + 1}: http ${k}, ${arm}`)
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
          const c = cell(k, arm)
          c.windows.push(result)
          c.health.push(...health.latencies)
          c.healthFailed += health.failed
          c.rows += (await metric(runner.url, `twinserve_runner_batch_rows_sum${series}`)) - rows0
          c.runs += (await metric(runner.url, `twinserve_runner_batch_rows_count${series}`)) - runs0
        }
    }
  } finally {
    await Promise.all([...[...runners.values()].map((r) => r.stop()), pool.release()])
  }
}
markLoad(mach, 'end')

// ---------------------------------------------------------------------------------------------- report
const minutes = (performance.now() - started) / 60_000
const worst = (xs: number[]) => (xs.length ? Math.max(...xs) : Number.NaN)
const p50 = (xs: number[]) => summarize(xs).p50
const argv = process.argv.slice(2)
const command = `npm run bench:event-loop${argv.length ? ` -- ${argv.join(' ')}` : ''}`
/** The lines every section starts with: how it was made, on what, under which load. */
const preamble = (): string[] => [
  `- **Command:** \`${command}\` (bench/event-loop.ts, ${fmt(minutes, 1)} min for the whole run), ${new Date().toISOString().slice(0, 10)}.`,
  `- **Machine:** ${mach.nproc} cores, ${mach.cpu}, ${mach.memGb} GB; Node ${mach.node}; onnxruntime-node ${mach.ort}; CPU provider, no spinning; 1-minute load average ${mach.loads.map((l) => `${l.phase} ${fmt(l.load, 2)}`).join(', ')} (a shared machine: other jobs ran too).`,
]
const sections: { name: string; md: string }[] = []
if (only.has('sessions')) {
  const row = (label: string, s: LoopSample) => [
    label,
    fmt(p50(s.runMs), 1),
    fmt(worst(s.delayP99), 1),
    fmt(worst(s.delayMax), 1),
    fmt(worst(s.timerLateMax), 1),
  ]
  sections.push({
    name: 'bench:event-loop:sessions',
    md: [
      `### Sessions: ${LAYERS} × MatMul [${D}×${D}] on X [${ROWS}, ${D}] (${fmt((2 * LAYERS * ROWS * D * D) / 1e9, 1)} GFLOP per run)`,
      '',
      ...preamble(),
      '',
      `${ROUNDS} interleaved rounds of ${RUNS} back-to-back runs per mode, ${mach.nproc} intra-op threads per session; the event loop's delay (monitorEventLoopDelay, 1 ms resolution) and a 5 ms interval timer's lateness while they run (worst round).`,
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
          row('the same session in its own thread, nice +0', loop.thread),
          row(
            `the same session in its own thread, nice +${NICE} (the runner's default)${nicedNote ? ` (${nicedNote})` : ''}`,
            loop.niced,
          ),
        ],
      ),
      '',
      "onnxruntime-node 1.30's `run()` returns a promise but executes synchronously on the calling thread (its backend defers the call with one `setImmediate`, then blocks): on the event loop, the loop stalls for the whole run. In a thread, the loop stays free; the run costs the hand-over of feeds and outputs on top. Lowered by nice, the session's threads (and onnxruntime's intra-op threads, created by it) yield to the event loop's thread when it wakes.",
    ].join('\n'),
  })
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
  const rate = (k: CaseKey, arm: Arm) => {
    const c = http.get(`${k}|${arm}`)
    return c ? combine(c.windows).rps : Number.NaN
  }
  const p99Of = (k: CaseKey, arm: Arm) => summarize(http.get(`${k}|${arm}`)?.health ?? []).p99
  const rows: string[][] = []
  const verdicts: string[] = []
  for (const k of ['twin', 'plain'] as const) {
    const sessionRate = sess(k)
    for (const arm of arms) {
      const c = http.get(`${k}|${arm}`)
      if (!c) continue
      const r = combine(c.windows)
      const h = summarize(c.health)
      rows.push([
        `${k === 'twin' ? 'r16 twin, 8 experts given' : 'plain shared model'}: ${ARMS[arm].label}`,
        fmt(r.rps, 2),
        fmt(c.runs ? c.rows / c.runs : Number.NaN, 1),
        fmt(sessionRate, 2),
        `${fmt(r.rps / sessionRate, 2)}×`,
        `${fmt(h.p50, 1)} / ${fmt(h.p99, 1)} / ${fmt(worst(c.health), 0)}`,
        `${h.n}${c.healthFailed ? `, ${c.healthFailed} unanswered` : ''}`,
      ])
      if (arm !== 'off')
        verdicts.push(
          `- ${k === 'twin' ? 'Twin' : 'Plain'}, ${arm}: health p99 ${fmt(h.p99, 1)} ms (goal ≤ 20 ms: ${h.p99 <= 20 ? 'met' : '**missed**'}); HTTP ${fmt(r.rps / sessionRate, 2)}× the session rate (goal ≥ 0.9×: ${r.rps / sessionRate >= 0.9 ? 'met' : '**missed**'}).`,
        )
    }
  }
  // The lever against its baseline, in the same run: what nice (or a core left free) buys and costs.
  const against = (arm: Arm) =>
    arms.includes(arm) && arms.includes('flat')
      ? [
          `- ${arm} ÷ flat, same run: health p99 ${(['twin', 'plain'] as const).map((k) => `${k} ${fmt(p99Of(k, arm) / p99Of(k, 'flat'), 2)}×`).join(', ')}; HTTP req/s ${(['twin', 'plain'] as const).map((k) => `${k} ${fmt(rate(k, arm) / rate(k, 'flat'), 2)}×`).join(', ')}.`,
        ]
      : []
  sections.push({
    name: 'bench:event-loop:http',
    md: [
      `### HTTP: \`twinserve serve\` on the BERT-base-shaped r16 package, c = ${CLIENTS}, batches of up to ${BATCH}`,
      '',
      ...preamble(),
      `- **Arms** (one runner each, as each reported itself at start): ${arms.map((a) => `${a} = ${ARMS[a].args.join(' ')} (${armNotes.get(a) ?? '–'})`).join('; ')}.`,
      '',
      `Closed-loop clients send single-row requests for ${WINDOW_MS / 1000} s windows (after ${WARMUP_MS / 1000} s of warm-up), ${HTTP_ROUNDS} rounds, arms and cases interleaved (order reversed every other round); a prober calls /v2/health/ready every ${PROBE_MS} ms during each measured window. Each runner had an untimed first pass per case. "Session rows/s" is the same graph run in-process at batch ${BATCH} (nice +0, ${mach.nproc} intra-op threads), one run at a time, measured between the HTTP rounds.`,
      '',
      table(
        [
          'case: arm',
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
      ...against('nice'),
      ...against('cores-1'),
      `- Twin ÷ plain: HTTP ${arms.map((a) => `${fmt(rate('twin', a) / rate('plain', a), 2)}× (${a})`).join(', ')}; session ${fmt(sess('twin') / sess('plain'), 2)}×.`,
    ].join('\n'),
  })
}
const RESULTS = join(import.meta.dirname, 'RESULTS.md')
for (const { name, md } of sections) {
  if (!values['no-write'] && !quick) await writeSection(RESULTS, name, md)
  process.stdout.write(`${md}\n\n`)
}
