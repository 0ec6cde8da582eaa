/**
 * Running the gateway locally as a real process (workerd via `wrangler dev`), for `npm start`, end-to-end tests
 * and benchmarks: apply the D1 migrations to a persistence directory, then start wrangler dev on 127.0.0.1 with
 * the secrets in a private env file (not on the command line, where `ps` would show them).
 *
 * @example
 *   const persistTo = await mkdtemp(join(tmpdir(), 'twinserve-gw-'))
 *   await applyLocalMigrations({ persistTo })
 *   const gw = await startLocalGateway({ persistTo, vars: { RUNNER_SIGNING_SECRET, ADMIN_BOOTSTRAP_SECRET } })
 *   await fetch(`${gw.url}/v2/health/live`)
 *   await gw.stop()
 * @module
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

const require = createRequire(import.meta.url)
const WRANGLER_BIN = require.resolve('wrangler/bin/wrangler.js')
/** The repository root, where wrangler.toml lives. */
export const REPO_ROOT = resolve(import.meta.dirname, '..', '..')

/** Offline, quiet wrangler: no telemetry, no Request.cf download. */
const WRANGLER_ENV = { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' }

const execFileP = promisify(execFile)

/** Runs wrangler to completion; its output (stdout then stderr) is in the error when it fails. */
async function run(args: string[], cwd: string): Promise<string> {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [WRANGLER_BIN, ...args], {
      cwd,
      env: { ...process.env, ...WRANGLER_ENV, CI: 'true' },
      maxBuffer: 16 * 1024 * 1024,
    })
    return stdout + stderr
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string }
    throw new Error(
      `wrangler ${args.join(' ')} exited with ${String(e.code)}:\n${e.stdout ?? ''}${e.stderr ?? ''}`,
      { cause: err },
    )
  }
}

/**
 * `wrangler d1 migrations apply DB --local --persist-to <dir>`: creates/updates the local D1 the gateway reads
 * (gateway/migrations). Idempotent: applied migrations are recorded in the database.
 */
export async function applyLocalMigrations(opts: { persistTo: string }): Promise<void> {
  await run(
    ['d1', 'migrations', 'apply', 'DB', '--local', '--persist-to', opts.persistTo],
    REPO_ROOT,
  )
}

/** A free TCP port on 127.0.0.1 (wrangler dev does not take port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr ? addr.port : 0
      srv.close(() => resolvePromise(port))
    })
  })
}

export interface LocalGatewayOptions {
  /** Persistence directory for D1 and Durable Objects (apply migrations to the same one first). */
  persistTo: string
  /** Vars and secrets (RUNNER_SIGNING_SECRET, ADMIN_BOOTSTRAP_SECRET, COLD_START_WAIT_MS, …). */
  vars: Record<string, string>
  /** Defaults to a free port. */
  port?: number
  /** Milliseconds to wait for /v2/health/live. */
  startTimeoutMs?: number
  /** Receives wrangler's and the Worker's output (JSON log lines included). */
  onOutput?: (chunk: string) => void
  /**
   * Run wrangler in its own process group, so a terminal's Ctrl-C reaches only the parent, which can then stop
   * its processes in order (npm start: the runner drains and deregisters before the gateway goes).
   */
  detached?: boolean
  /**
   * wrangler's own --log-level (default warn). It also filters the Worker's console output: the gateway's info
   * lines (one per request, cold_start_served) need 'log'; its warn/error lines pass at 'warn'.
   */
  wranglerLogLevel?: 'error' | 'warn' | 'info' | 'log' | 'debug'
}

export interface LocalGateway {
  url: string
  port: number
  process: ChildProcess
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
  stop(): Promise<void>
}

export async function startLocalGateway(opts: LocalGatewayOptions): Promise<LocalGateway> {
  const port = opts.port ?? (await freePort())
  const envFile = join(opts.persistTo, 'gateway.env')
  const lines = Object.entries(opts.vars).map(([k, v]) => {
    // Single-quoted dotenv values are taken literally; refuse what would need escaping rather than guess.
    if (!/^[A-Z][A-Z0-9_]*$/.test(k) || /['"\\\r\n]/.test(v))
      throw new Error(
        `var ${k}: names are UPPER_SNAKE and values may not contain quotes, \\ or newlines`,
      )
    return `${k}='${v}'`
  })
  await writeFile(envFile, `${lines.join('\n')}\n`, { mode: 0o600 })
  const child = spawn(
    process.execPath,
    [
      WRANGLER_BIN,
      'dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--inspector-port',
      '0',
      '--persist-to',
      opts.persistTo,
      '--env-file',
      envFile,
      '--show-interactive-dev-session=false',
      '--log-level',
      opts.wranglerLogLevel ?? 'warn',
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...WRANGLER_ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
    },
  )
  let output = ''
  const collect = (d: Buffer) => {
    const s = d.toString()
    output = (output + s).slice(-20_000)
    opts.onOutput?.(s)
  }
  child.stdout?.on('data', collect)
  child.stderr?.on('data', collect)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000)
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${output}`)
    try {
      const res = await fetch(`${url}/v2/health/live`)
      if (res.ok) return { url, port, process: child, stop }
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  await stop()
  throw new Error(`wrangler dev did not become live on ${url}:\n${output}`)
}
