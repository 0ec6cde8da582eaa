/**
 * The real gateway (workerd under `wrangler dev`, local D1 with the migrations applied, Durable Objects) for
 * end-to-end tests with real runner processes (runner-harness.ts): a private state directory (a copy of migrated
 * state, migrated-d1.ts), generated secrets, the Worker's JSON log lines collected, and helpers for keys, inference
 * and runners that join it.
 *
 * @example
 * const gw = await startE2eGateway({ COLD_START_WAIT_MS: '5000' })
 * const key = await gw.createKey()
 * const r = await startGatewayRunner(gw, { packages: [dir], runnerId: 'a' })
 * const res = await gw.infer(key, 'tiny-twin', body)
 * await r.stop(); await gw.stop()
 * @module
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type LocalGatewayOptions, startLocalGateway } from '@twinserve/gateway/dev'
import {
  CreatedApiKeySchema,
  type GatewayMetrics,
  GatewayMetricsSchema,
  RunnerListSchema,
} from '@twinserve/shared'
import { migratedState } from './migrated-d1.ts'
import { type RunnerProcess, startRunnerProcess } from './runner-harness.ts'

export type LogLine = Record<string, unknown>

export interface E2eGateway {
  url: string
  secret: string
  admin: string
  /** The Worker's JSON log lines so far (wrangler's own lines are skipped). */
  logs: LogLine[]
  /** Resolves with the first Worker log line matching `pred` (already logged or future). */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** A new API key (scope infer) for `models` (default all), of `tenant` (default `e2e`). */
  createKey(models?: string[], tenant?: string): Promise<string>
  /** POST /v2/models/{model}/infer with a bearer key; the body is sent as given (string) or as JSON. */
  infer(
    key: string,
    model: string,
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; headers: Headers; json: Record<string, unknown> }>
  /** Runner ids the registry lists (admin API). */
  runners(): Promise<string[]>
  /** GET /metrics as JSON (admin). */
  metrics(): Promise<GatewayMetrics>
  /** Stops the gateway process and starts it again on the same port, state directory and secrets. */
  restart(): Promise<void>
  stop(): Promise<void>
}

/** Extracts a JSON object from a line wrangler may have decorated (colours, an "ERROR" prefix). */
function jsonOf(line: string): LogLine | undefined {
  const start = line.indexOf('{')
  const end = line.lastIndexOf('}')
  if (start < 0 || end < start) return undefined
  try {
    const parsed: unknown = JSON.parse(line.slice(start, end + 1))
    return parsed && typeof parsed === 'object' && 'event' in parsed
      ? (parsed as LogLine)
      : undefined
  } catch {
    return undefined
  }
}

/** What serves the gateway: `wrangler dev` by default; anything started from the same options will do. */
export type GatewayStarter = (
  opts: LocalGatewayOptions,
) => Promise<{ url: string; port: number; stop(): Promise<void> }>

/**
 * `start` serves the Worker; the default is `wrangler dev` (what `npm start` runs). The chaos run passes a bare
 * workerd instead (bench/chaos/main.ts: wrangler dev's proxy hop loses requests of its own).
 */
export async function startE2eGateway(
  vars: Record<string, string> = {},
  start: GatewayStarter = startLocalGateway,
): Promise<E2eGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'twinserve-e2e-gw-'))
  const secret = randomBytes(24).toString('hex')
  const admin = randomBytes(24).toString('hex')
  const logs: LogLine[] = []
  const listeners: ((l: LogLine) => void)[] = []
  let partial = ''
  await migratedState(dir)
  const options = {
    persistTo: dir,
    vars: { RUNNER_SIGNING_SECRET: secret, ADMIN_BOOTSTRAP_SECRET: admin, ...vars },
    // 'log' lets the Worker's info lines (request, cold_start_served) through.
    wranglerLogLevel: 'log' as const,
    startTimeoutMs: 60_000,
    onOutput: (chunk: string) => {
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        const l = jsonOf(line)
        if (!l) continue
        logs.push(l)
        for (const f of [...listeners]) f(l)
      }
    },
  }
  let gw = await start(options)
  const adminHeaders = { authorization: `Bearer ${admin}` }

  const waitForLog: E2eGateway['waitForLog'] = (pred, timeoutMs = 20_000) => {
    const found = logs.find(pred)
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const listener = (l: LogLine) => {
        if (!pred(l)) return
        clearTimeout(timer)
        listeners.splice(listeners.indexOf(listener), 1)
        resolve(l)
      }
      const timer = setTimeout(() => {
        listeners.splice(listeners.indexOf(listener), 1)
        reject(new Error(`gateway log line not seen within ${timeoutMs} ms`))
      }, timeoutMs)
      listeners.push(listener)
    })
  }

  return {
    url: gw.url,
    secret,
    admin,
    logs,
    waitForLog,
    async createKey(models = ['*'], tenant = 'e2e') {
      const res = await fetch(`${gw.url}/admin/keys`, {
        method: 'POST',
        headers: { ...adminHeaders, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant, scopes: ['infer'], models }),
      })
      if (res.status !== 201) throw new Error(`create key: ${res.status} ${await res.text()}`)
      return CreatedApiKeySchema.parse(await res.json()).key
    },
    async infer(key, model, body, headers = {}) {
      const res = await fetch(`${gw.url}/v2/models/${model}/infer`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          ...headers,
        },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      })
      const text = await res.text()
      let json: Record<string, unknown>
      try {
        json = JSON.parse(text) as Record<string, unknown>
      } catch {
        json = { unparsed: text }
      }
      return { status: res.status, headers: res.headers, json }
    },
    async runners() {
      const res = await fetch(`${gw.url}/admin/runners`, { headers: adminHeaders })
      if (!res.ok) throw new Error(`admin/runners: ${res.status} ${await res.text()}`)
      return RunnerListSchema.parse(await res.json()).runners.map((r) => r.runner_id)
    },
    async metrics() {
      const res = await fetch(`${gw.url}/metrics`, {
        headers: { ...adminHeaders, accept: 'application/json' },
      })
      if (!res.ok) throw new Error(`metrics: ${res.status} ${await res.text()}`)
      return GatewayMetricsSchema.parse(await res.json())
    },
    async restart() {
      await gw.stop()
      gw = await start({ ...options, port: gw.port })
    },
    async stop() {
      await gw.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/** Sum of a metric's samples whose labels include `labels`. */
export function metricValue(
  m: GatewayMetrics,
  name: string,
  labels: Record<string, string> = {},
): number {
  return m.families
    .flatMap((f) => f.samples)
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0)
}

/** A real runner process registered with `gw` (waits for the registration to be acknowledged). */
export async function startGatewayRunner(
  gw: E2eGateway,
  opts: { packages: string[]; runnerId: string; args?: string[]; startTimeoutMs?: number },
): Promise<RunnerProcess> {
  const r = await startRunnerProcess({
    packages: opts.packages,
    secret: gw.secret,
    args: ['--gateway-url', gw.url, '--runner-id', opts.runnerId, ...(opts.args ?? [])],
    ...(opts.startTimeoutMs ? { startTimeoutMs: opts.startTimeoutMs } : {}),
  })
  await r.waitForLog((l) => l.msg === 'registered with the gateway', opts.startTimeoutMs)
  return r
}
