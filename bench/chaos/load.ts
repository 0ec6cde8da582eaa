/**
 * Closed-loop load for the chaos run: `concurrency` clients, each sending the next request as soon as the last
 * one is answered, every answer recorded with its start, end, status and Retry-After. A request with no answer
 * within `hangMs` is recorded as a hang (status 0), never waited on forever.
 * @module
 */

export interface Sample {
  /** ms since epoch */
  start: number
  end: number
  /** HTTP status; 0: no answer (connection refused, reset, or a hang past hangMs). */
  status: number
  retryAfter: string | null
  /** Why there was no answer, or the start of the error body. */
  error?: string
  /** The runner that answered (x-twinserve-runner). */
  runner: string | null
  /** The gateway's route trace (x-twinserve-route-trace), when it runs with ROUTE_TRACE=1 (`--trace`). */
  trace?: string
}

export interface LoadOptions {
  url: string
  key: string
  model: string
  /** JSON text, or a binary tensor body (then `headers` name its content type and JSON header length). */
  body: string | Uint8Array<ArrayBuffer>
  concurrency: number
  /** A request unanswered this long is a hang. */
  hangMs: number
  headers?: Record<string, string>
}

/** One request: its sample. */
export async function send(o: Omit<LoadOptions, 'concurrency'>): Promise<Sample> {
  const start = Date.now()
  try {
    const res = await fetch(`${o.url}/v2/models/${o.model}/infer`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${o.key}`,
        'content-type': 'application/json',
        ...o.headers,
      },
      body: o.body,
      signal: AbortSignal.timeout(o.hangMs),
    })
    const text = await res.text()
    const trace = res.headers.get('x-twinserve-route-trace')
    return {
      ...(trace === null ? {} : { trace }),
      start,
      end: Date.now(),
      status: res.status,
      retryAfter: res.headers.get('retry-after'),
      runner: res.headers.get('x-twinserve-runner'),
      // The error body names the cause (shared error table); kept short for the report.
      ...(res.ok ? {} : { error: text.slice(0, 160) }),
    }
  } catch (err) {
    const e = err as Error
    return {
      start,
      end: Date.now(),
      status: 0,
      retryAfter: null,
      runner: null,
      // undici says only 'fetch failed'; the socket's own error (reset, closed by the other side) is its cause.
      error:
        e.name === 'TimeoutError'
          ? `hang: no answer within ${o.hangMs} ms`
          : e.cause instanceof Error
            ? `${e.message}: ${(e.cause as NodeJS.ErrnoException).code ?? ''} ${e.cause.message}`.trim()
            : e.message,
    }
  }
}

export class Load {
  readonly samples: Sample[] = []
  private running = false
  private workers: Promise<void>[] = []

  constructor(private readonly opts: LoadOptions) {}

  start(): void {
    this.running = true
    this.workers = Array.from({ length: this.opts.concurrency }, async () => {
      while (this.running) {
        const s = await send(this.opts)
        this.samples.push(s)
        // A refused connection answers at once; without a pause a client would spin while the gateway is down.
        if (s.status === 0) await sleep(50)
      }
    })
  }

  /** Stops sending; resolves once every request in flight is answered (or hangs out). */
  async stop(): Promise<void> {
    this.running = false
    await Promise.all(this.workers)
  }

  /** The samples of requests started in [from, to). */
  between(from: number, to: number): Sample[] {
    return this.samples.filter((s) => s.start >= from && s.start < to)
  }
}

/** The q-quantile (0..1) of the samples' latencies in ms. */
export function quantile(samples: readonly Sample[], q: number): number {
  const ms = samples.map((s) => s.end - s.start).sort((a, b) => a - b)
  if (ms.length === 0) return Number.NaN
  return ms[Math.min(ms.length - 1, Math.max(0, Math.ceil(q * ms.length) - 1))] ?? Number.NaN
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
