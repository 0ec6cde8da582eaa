/**
 * Starts real runner processes (`node gpu-runner/bin/twinserve.mjs serve …`) on loopback for end-to-end tests:
 * port 0 (the runner picks a free port and logs it), JSON log lines collected, readiness awaited, and stopped by
 * the child's pid only. Reusable by any e2e test that needs a runner (the gateway's included).
 *
 * @example
 * const r = await startRunnerProcess({ packages: [dir], secret })
 * await fetch(`${r.url}/v2/health/ready`)
 * await r.stop() // SIGTERM, waits for the exit code
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { signRequest } from '@twinserve/shared'

export const TWINSERVE_BIN = fileURLToPath(
  new URL('../../gpu-runner/bin/twinserve.mjs', import.meta.url),
)

export interface RunnerProcess {
  url: string
  port: number
  child: ChildProcess
  /** Every JSON log line so far (stdout), parsed. */
  logs: Record<string, unknown>[]
  /** stderr so far (onnxruntime's own messages land here). */
  stderr: () => string
  /** Resolves with the exit code when the process ends. */
  exited: Promise<number | null>
  /** Sends `signal` (default SIGTERM) and waits for the exit; kills after `timeoutMs`. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>
  /** Resolves with the first log line matching `pred` (already logged or future). */
  waitForLog(
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>
}

export interface StartOptions {
  packages: string[]
  /** RUNNER_SIGNING_SECRET; omit with `insecureLocal`. */
  secret?: string
  insecureLocal?: boolean
  /** More `serve` flags, e.g. ['--max-queue', '2']. */
  args?: string[]
  env?: Record<string, string>
  startTimeoutMs?: number
}

export async function startRunnerProcess(opts: StartOptions): Promise<RunnerProcess> {
  const args = [
    TWINSERVE_BIN,
    'serve',
    ...opts.packages.flatMap((p) => ['--package', p]),
    '--port',
    '0',
    '--provider',
    'cpu',
    '--threads',
    '1',
    ...(opts.insecureLocal ? ['--insecure-local'] : []),
    ...(opts.args ?? []),
  ]
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...opts.env }
  if (opts.secret) env.RUNNER_SIGNING_SECRET = opts.secret
  else delete env.RUNNER_SIGNING_SECRET
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  const logs: Record<string, unknown>[] = []
  const listeners: ((l: Record<string, unknown>) => void)[] = []
  let stderr = ''
  let partial = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    partial += chunk
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (!line.trim()) continue
      let parsed: Record<string, unknown>
      try {
        parsed = JSON.parse(line) as Record<string, unknown>
      } catch {
        parsed = { msg: 'non-JSON stdout', line }
      }
      logs.push(parsed)
      for (const l of [...listeners]) l(parsed)
    }
  })
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  )

  const waitForLog: RunnerProcess['waitForLog'] = (pred, timeoutMs = 20_000) => {
    const found = logs.find(pred)
    if (found) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.splice(listeners.indexOf(listener), 1)
        reject(
          new Error(
            `runner log line not seen within ${timeoutMs} ms; stderr:\n${stderr.slice(-2000)}`,
          ),
        )
      }, timeoutMs)
      const listener = (l: Record<string, unknown>) => {
        if (!pred(l)) return
        clearTimeout(timer)
        listeners.splice(listeners.indexOf(listener), 1)
        resolve(l)
      }
      listeners.push(listener)
      void exited.then((code) => {
        clearTimeout(timer)
        reject(
          new Error(`runner exited (${code}) before the log line; stderr:\n${stderr.slice(-2000)}`),
        )
      })
    })
  }

  const listening = await waitForLog((l) => l.msg === 'listening', opts.startTimeoutMs ?? 30_000)
  const port = Number(listening.port)
  const stop: RunnerProcess['stop'] = async (signal = 'SIGTERM', timeoutMs = 15_000) => {
    if (child.exitCode !== null) return child.exitCode
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    const code = await exited
    clearTimeout(timer)
    return code
  }
  return {
    url: String(listening.url),
    port,
    child,
    logs,
    stderr: () => stderr,
    exited,
    stop,
    waitForLog,
  }
}

/** fetch with the gateway's signature headers (what a real gateway sends). */
export async function signedFetch(
  secret: string,
  baseUrl: string,
  path: string,
  init: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const method = init.method ?? (init.body === undefined ? 'GET' : 'POST')
  const body = init.body ?? ''
  const headers = {
    ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
    ...init.headers,
    ...(await signRequest(secret, { method, path, body })),
  }
  return fetch(`${baseUrl}${path}`, {
    method,
    headers,
    ...(init.body !== undefined ? { body } : {}),
  })
}
