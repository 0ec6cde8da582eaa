/**
 * End-to-end benchmark through the real HTTP server: `twinserve serve` processes on loopback (unsigned,
 * `--insecure-local`), one with dynamic batching on (the default: up to 16 rows, no added wait) and one with it off
 * (`--max-batch-size 1`), both holding the same packages, driven by the closed-loop client in http-load.ts.
 * Cases run interleaved in rounds; after each window the client hangs up (queued requests are dropped by the
 * runner) and the next window starts once the runner's queue and in-flight gauges read 0.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { TWINSERVE_BIN } from '../../test/support/runner-harness.ts'
import { closedLoop, combine, type LoadResult } from './http-load.ts'

export interface RunnerHandle {
  url: string
  label: string
  child: ChildProcess
  /** The runner's `listening` log line (its settings as it applied them: provider, session_nice, …). */
  listening: Record<string, unknown>
  /** The end of the runner's stderr (onnxruntime's own messages, a crash). */
  stderr(): string
  stop(): Promise<void>
}

/** Starts `twinserve serve` on a free port; resolves once it logs `listening`. Its later logs are discarded. */
export async function startRunner(
  label: string,
  packages: readonly string[],
  args: readonly string[],
): Promise<RunnerHandle> {
  const child = spawn(
    process.execPath,
    [
      TWINSERVE_BIN,
      'serve',
      ...packages.flatMap((p) => ['--package', p]),
      '--port',
      '0',
      '--insecure-local',
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUNNER_SIGNING_SECRET: '' } },
  )
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000)
  })
  const listening = await new Promise<Record<string, unknown> & { url: string }>(
    (resolve, reject) => {
      let buf = ''
      const onData = (c: Buffer) => {
        buf += c.toString()
        let nl = buf.indexOf('\n')
        while (nl >= 0) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          nl = buf.indexOf('\n')
          try {
            const l = JSON.parse(line) as Record<string, unknown>
            if (l.msg === 'listening' && typeof l.url === 'string') {
              child.stdout?.off('data', onData)
              // Keep draining stdout (a request log line each) so the runner never blocks on a full pipe.
              child.stdout?.resume()
              resolve({ ...l, url: l.url })
              return
            }
          } catch {
            // not a JSON line
          }
        }
      }
      child.stdout?.on('data', onData)
      child.once('exit', (code) =>
        reject(new Error(`runner '${label}' exited (${code}) before listening:\n${stderr}`)),
      )
    },
  )
  return {
    url: listening.url,
    label,
    child,
    listening,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null) return
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    },
  }
}

async function metricsText(url: string): Promise<string> {
  // A keep-alive socket the server has just closed can fail one fetch; the runner itself is checked by the caller.
  for (let attempt = 0; ; attempt++)
    try {
      return await (await fetch(`${url}/metrics`)).text()
    } catch (err) {
      if (attempt >= 3) throw err
      await new Promise((r) => setTimeout(r, 100))
    }
}

/** Prometheus text → value of one series (exact name with labels, or without). */
export async function metric(url: string, series: string): Promise<number> {
  const text = await metricsText(url)
  let total = 0
  for (const line of text.split('\n'))
    if (line.startsWith(series) && (line[series.length] === ' ' || line[series.length] === '{'))
      total += Number(line.slice(line.lastIndexOf(' ') + 1))
  return total
}

/** Waits until nothing is queued or running (a hung-up window's leftovers have finished). */
export async function waitIdle(url: string, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const busy =
      (await metric(url, 'twinserve_runner_queue_depth')) +
      (await metric(url, 'twinserve_runner_in_flight'))
    if (busy === 0) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`runner at ${url} still busy after ${timeoutMs} ms`)
}

export interface HttpCase {
  key: string
  label: string
  model: string
  /** Body of the next request. */
  body: () => string
  /** The response's merge_path (checked on the first response of every window). */
  mergePath: 'factored' | 'materialized' | 'static'
  /** Concurrencies to run, and on which runners ('on' = batching on). */
  plan: { concurrency: number; runners: ('on' | 'off')[] }[]
}

export interface HttpResult {
  key: string
  label: string
  model: string
  concurrency: number
  batching: 'on' | 'off'
  result: LoadResult
  /** Mean rows per onnxruntime run during the windows (batch_rows histogram). */
  meanRows: number
  /** Merge-cache lookups during the windows. */
  cache: { hits: number; misses: number }
}

/** Runs every case's plan in `rounds` interleaved rounds of `windowMs` each. */
export async function runHttpCases(
  runners: { on: RunnerHandle; off: RunnerHandle },
  cases: readonly HttpCase[],
  opts: {
    rounds: number
    windowMs: (c: HttpCase, concurrency: number) => number
    warmupMs: (c: HttpCase, concurrency: number) => number
    log: (s: string) => void
  },
): Promise<HttpResult[]> {
  const alive = (r: RunnerHandle) => {
    if (r.child.exitCode !== null || r.child.signalCode !== null)
      throw new Error(
        `runner '${r.label}' exited (${r.child.exitCode ?? r.child.signalCode}):\n${r.stderr()}`,
      )
  }
  // Untimed first pass over every case on every runner it uses: JIT, onnxruntime's first-run allocations.
  for (const c of cases)
    for (const which of new Set(c.plan.flatMap((p) => p.runners))) {
      const runner = runners[which]
      await waitIdle(runner.url)
      await closedLoop({
        url: runner.url,
        path: `/v2/models/${c.model}/infer`,
        body: c.body,
        concurrency: 2,
        durationMs: opts.warmupMs(c, 2),
        warmupMs: 0,
      })
      alive(runner)
    }
  const parts = new Map<
    string,
    {
      c: HttpCase
      concurrency: number
      batching: 'on' | 'off'
      windows: LoadResult[]
      rows: number
      runs: number
      hits: number
      misses: number
    }
  >()
  for (let round = 0; round < opts.rounds; round++)
    for (const c of cases)
      for (const step of c.plan)
        for (const which of step.runners) {
          const runner = runners[which]
          const id = `${c.key}|${step.concurrency}|${which}`
          const entry = parts.get(id) ?? {
            c,
            concurrency: step.concurrency,
            batching: which,
            windows: [],
            rows: 0,
            runs: 0,
            hits: 0,
            misses: 0,
          }
          parts.set(id, entry)
          await waitIdle(runner.url)
          const model = `model="${c.model}"`
          const rows0 = await metric(runner.url, `twinserve_runner_batch_rows_sum{${model}}`)
          const runs0 = await metric(runner.url, `twinserve_runner_batch_rows_count{${model}}`)
          const hit0 = await metric(
            runner.url,
            `twinserve_runner_merge_cache_lookups_total{${model},result="hit"}`,
          )
          const miss0 = await metric(
            runner.url,
            `twinserve_runner_merge_cache_lookups_total{${model},result="miss"}`,
          )
          const result = await closedLoop({
            url: runner.url,
            path: `/v2/models/${c.model}/infer`,
            body: c.body,
            concurrency: step.concurrency,
            durationMs: opts.windowMs(c, step.concurrency),
            warmupMs: opts.warmupMs(c, step.concurrency),
            check: (r) => {
              const got = (r as { parameters?: { merge_path?: string } }).parameters?.merge_path
              if (got !== c.mergePath)
                throw new Error(
                  `${c.label}: expected merge_path ${c.mergePath}, the runner answered ${got}`,
                )
            },
          })
          alive(runner)
          await waitIdle(runner.url)
          entry.windows.push(result)
          entry.rows +=
            (await metric(runner.url, `twinserve_runner_batch_rows_sum{${model}}`)) - rows0
          entry.runs +=
            (await metric(runner.url, `twinserve_runner_batch_rows_count{${model}}`)) - runs0
          entry.hits +=
            (await metric(
              runner.url,
              `twinserve_runner_merge_cache_lookups_total{${model},result="hit"}`,
            )) - hit0
          entry.misses +=
            (await metric(
              runner.url,
              `twinserve_runner_merge_cache_lookups_total{${model},result="miss"}`,
            )) - miss0
          opts.log(
            `  ${c.label} c=${step.concurrency} batching ${which}: ${result.rps.toFixed(1)} req/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms`,
          )
        }
  return [...parts.values()].map((p) => ({
    key: p.c.key,
    label: p.c.label,
    model: p.c.model,
    concurrency: p.concurrency,
    batching: p.batching,
    result: combine(p.windows),
    meanRows: p.runs > 0 ? p.rows / p.runs : Number.NaN,
    cache: { hits: p.hits, misses: p.misses },
  }))
}
