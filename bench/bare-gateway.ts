/**
 * The gateway as production runs it, minus Cloudflare: the bundle `wrangler deploy --dry-run` would upload,
 * served by one bare workerd process (through Miniflare, with local D1, Durable Objects and the rate-limit
 * binding in the same process) — no `wrangler dev`, so no proxy Worker in front and no second workerd. Its
 * process is the gateway's whole CPU cost, which bench/gateway-overhead.ts reads from /proc per request.
 *
 * Run as a child process (startBareGateway) so that the Worker's log lines and Miniflare's own work stay out of
 * the benchmark's process:
 *
 *   node --import tsx bench/bare-gateway.ts --root <checkout> --persist <dir> --port <p> [--inspector-port <p>]
 *     [--worker-log <file> | --worker-log-stdout]
 *     (vars as JSON on stdin; prints one line `{"ready":true,"url":…,"workerdPid":…}` when it serves)
 * @module
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { promisify } from 'node:util'
import { childrenNamed } from './process-cpu.ts'

const execFileP = promisify(execFile)

/** Bindings of wrangler.toml's top level (the local environment), which the dry-run bundle expects. */
const COMPATIBILITY_DATE = '2026-04-20'
const COMPATIBILITY_FLAGS = ['nodejs_compat', 'enable_request_signal']
const DATABASE_ID = '00000000-0000-0000-0000-000000000000'

/** `wrangler deploy --dry-run --outdir`: the Worker bundle exactly as it would be uploaded. */
export async function bundleGateway(root: string): Promise<string> {
  const outdir = await mkdtemp(join(tmpdir(), 'twinserve-bare-gw-'))
  const wrangler = join(root, 'node_modules', 'wrangler', 'bin', 'wrangler.js')
  await execFileP(process.execPath, [wrangler, 'deploy', '--dry-run', '--outdir', outdir], {
    cwd: root,
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: 'false',
      CLOUDFLARE_CF_FETCH_ENABLED: 'false',
      CI: 'true',
    },
    maxBuffer: 16 * 1024 * 1024,
  })
  return outdir
}

async function serve(): Promise<void> {
  const { parseArgs } = await import('node:util')
  const { values } = parseArgs({
    options: {
      root: { type: 'string' },
      persist: { type: 'string' },
      port: { type: 'string' },
      'inspector-port': { type: 'string' },
      'preauth-limit': { type: 'string', default: '2000' },
      'worker-log': { type: 'string' },
      'worker-log-stdout': { type: 'boolean', default: false },
    },
  })
  const root = values.root ?? process.cwd()
  const persist = values.persist ?? (await mkdtemp(join(tmpdir(), 'twinserve-bare-state-')))
  let stdin = ''
  for await (const chunk of process.stdin) stdin += chunk
  const vars = JSON.parse(stdin || '{}') as Record<string, string>
  const dist = await bundleGateway(root)
  const { Miniflare } = await import('miniflare')
  const mf = new Miniflare({
    host: '127.0.0.1',
    port: Number(values.port ?? 0),
    ...(values['inspector-port'] ? { inspectorPort: Number(values['inspector-port']) } : {}),
    defaultPersistRoot: join(persist, 'v3'),
    // The Worker's log lines are its stdout; reading them would put their cost in this process, not workerd's.
    handleRuntimeStdio(stdout: Readable, stderr: Readable) {
      // Callers that read the Worker's log lines (the chaos run) take them on this process's stdout.
      if (values['worker-log-stdout']) {
        stdout.pipe(process.stdout)
        stderr.pipe(process.stderr)
        return
      }
      const file = values['worker-log']
      if (!file) {
        stdout.resume()
        stderr.resume()
        return
      }
      const sink = createWriteStream(file)
      stdout.pipe(sink)
      stderr.pipe(sink)
    },
    workers: [
      {
        name: 'twinserve-gateway',
        modules: true,
        scriptPath: join(dist, 'index.js'),
        modulesRoot: dist,
        modulesRules: [
          { type: 'Text', include: ['**/*chart.umd.min.js', '**/*.client.js'], fallthrough: false },
        ],
        compatibilityDate: COMPATIBILITY_DATE,
        compatibilityFlags: COMPATIBILITY_FLAGS,
        bindings: vars,
        d1Databases: { DB: DATABASE_ID },
        // wrangler.toml's migrations declare every class with new_sqlite_classes.
        durableObjects: {
          RUNNER_REGISTRY: { className: 'RunnerRegistry', useSQLite: true },
          RATE_LIMITER: { className: 'RateLimiter', useSQLite: true },
          EXPERIMENT_BANDIT: { className: 'ExperimentBandit', useSQLite: true },
        },
        ratelimits: {
          PREAUTH_LIMITER: { simple: { limit: Number(values['preauth-limit']), period: 10 } },
        },
      },
    ],
  })
  const url = (await mf.ready).toString().replace(/\/$/, '')
  // workerd has the modules now (Miniflare passes them in its config); the bundle on disk is no longer read.
  await rm(dist, { recursive: true, force: true })
  const [workerdPid] = childrenNamed(process.pid, 'workerd')
  console.log(JSON.stringify({ ready: true, url, workerdPid }))
  const stop = () => {
    mf.dispose().finally(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

export interface BareGateway {
  url: string
  /** The workerd process serving the Worker (its CPU is the gateway's). */
  workerdPid: number
  process: ChildProcess
  stop(): Promise<void>
}

/**
 * Starts the checkout at `root` (its wrangler.toml and gateway/) in a bare workerd, with `persist` as its D1 and
 * Durable Object state (apply the migrations there first: local-gateway.ts applyLocalMigrations).
 */
export async function startBareGateway(opts: {
  root: string
  persist: string
  vars: Record<string, string>
  port?: number
  inspectorPort?: number
  /** PREAUTH_LIMITER's per-IP allowance per 10 s (the benchmark's one client IP needs more than 2000). */
  preauthLimit?: number
  /** Where the Worker's stdout and stderr (its log lines) go; discarded without one (or onOutput). */
  workerLog?: string
  /** Receives the Worker's output (its JSON log lines) instead of a file. */
  onOutput?: (chunk: string) => void
}): Promise<BareGateway> {
  const { freePort } = await import('../gateway/dev/local-gateway.ts')
  const port = opts.port ?? (await freePort())
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      import.meta.filename,
      '--root',
      opts.root,
      '--persist',
      opts.persist,
      '--port',
      String(port),
      ...(opts.inspectorPort ? ['--inspector-port', String(opts.inspectorPort)] : []),
      ...(opts.preauthLimit ? ['--preauth-limit', String(opts.preauthLimit)] : []),
      ...(opts.workerLog ? ['--worker-log', opts.workerLog] : []),
      ...(opts.onOutput ? ['--worker-log-stdout'] : []),
    ],
    { cwd: opts.root, stdio: ['pipe', 'pipe', 'pipe'] },
  )
  child.stdin?.end(JSON.stringify(opts.vars))
  let output = ''
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const ready = await new Promise<{ url: string; workerdPid: number }>((resolve, reject) => {
    let ready = false
    const onData = (d: Buffer) => {
      opts.onOutput?.(d.toString())
      if (ready) return
      output += d.toString()
      const line = output.split('\n').find((l) => l.startsWith('{"ready":true'))
      if (!line) return
      ready = true
      resolve(JSON.parse(line) as { url: string; workerdPid: number })
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (d: Buffer) => {
      opts.onOutput?.(d.toString())
      output = (output + d.toString()).slice(-20_000)
    })
    child.once('exit', (code) => reject(new Error(`bare gateway exited ${code}:\n${output}`)))
  })
  return {
    ...ready,
    process: child,
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

if (process.argv[1] === import.meta.filename) await serve()
