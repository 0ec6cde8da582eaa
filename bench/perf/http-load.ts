/**
 * A closed-loop HTTP load generator: `concurrency` workers on keep-alive connections, each sending its next
 * request as soon as the previous response has been read in full. Latency is measured per request with
 * performance.now() (sub-millisecond, unlike autocannon's millisecond histogram, which matters for the demo
 * package's sub-millisecond runs). Throughput is the responses completed inside the measuring window (after the
 * warm-up, so the loop is in its steady state), and the latencies are those of the same responses. At the
 * window's end the client hangs up on whatever is still outstanding (the runner drops queued requests whose
 * client left), so a deep queue does not have to drain before the next window.
 * @module
 */
import http from 'node:http'
import { summarize } from './report.ts'

export interface LoadResult {
  concurrency: number
  /** Responses completed inside the measuring window. */
  requests: number
  /** Non-200 responses (any window), by status. */
  failures: Record<string, number>
  seconds: number
  rps: number
  p50: number
  p99: number
  /** Every measured latency, ms (for combining rounds). */
  latencies: number[]
}

export interface LoadOptions {
  url: string
  path: string
  /** The next request's JSON body (a fresh one per request where the case needs it). */
  body: () => string
  concurrency: number
  durationMs: number
  /** Requests started before this much time has passed are not measured. */
  warmupMs: number
  /** Checked against the first successful response (which path ran, etc.). */
  check?: (response: unknown) => void
}

function post(
  agent: http.Agent,
  url: URL,
  path: string,
  body: string,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

export async function closedLoop(opts: LoadOptions): Promise<LoadResult> {
  const url = new URL(opts.url)
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency })
  const start = performance.now()
  const measureFrom = start + opts.warmupMs
  const end = measureFrom + opts.durationMs
  const latencies: number[] = []
  const failures: Record<string, number> = {}
  let checked = !opts.check
  let over = false
  const stop = setTimeout(
    () => {
      over = true
      agent.destroy()
    },
    Math.max(0, end - performance.now()),
  )
  const worker = async () => {
    while (!over) {
      const body = opts.body()
      const t = performance.now()
      let res: { status: number; text: string }
      try {
        res = await post(agent, url, opts.path, body)
      } catch (err) {
        if (over) break
        throw err
      }
      const done = performance.now()
      if (res.status !== 200) {
        failures[res.status] = (failures[res.status] ?? 0) + 1
        continue
      }
      if (!checked) {
        checked = true
        opts.check?.(JSON.parse(res.text))
      }
      if (done >= measureFrom && done <= end) latencies.push(done - t)
    }
  }
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, worker))
  } finally {
    clearTimeout(stop)
    agent.destroy()
  }
  const s = summarize(latencies)
  const seconds = opts.durationMs / 1000
  return {
    concurrency: opts.concurrency,
    requests: s.n,
    failures,
    seconds,
    rps: s.n / seconds,
    p50: s.p50,
    p99: s.p99,
    latencies,
  }
}

/** Sums several windows of the same case (interleaved rounds) into one result. */
export function combine(parts: readonly LoadResult[]): LoadResult {
  const first = parts[0]
  if (!first) throw new Error('no load results to combine')
  const requests = parts.reduce((a, p) => a + p.requests, 0)
  const seconds = parts.reduce((a, p) => a + p.seconds, 0)
  const failures: Record<string, number> = {}
  for (const p of parts)
    for (const [k, v] of Object.entries(p.failures)) failures[k] = (failures[k] ?? 0) + v
  const latencies = parts.flatMap((p) => p.latencies)
  const s = summarize(latencies)
  return {
    concurrency: first.concurrency,
    requests,
    failures,
    seconds,
    rps: requests / seconds,
    p50: s.p50,
    p99: s.p99,
    latencies,
  }
}
