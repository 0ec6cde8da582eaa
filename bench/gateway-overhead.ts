/**
 * Gateway overhead: throughput and latency (p50/p99) of V2 inference straight to a runner versus through the
 * gateway (workerd under `wrangler dev`, D1 + Durable Objects), same run, concurrency 32, arms interleaved.
 *
 *   node --import tsx bench/gateway-overhead.ts [--upstream runner|stand-in] [--duration 10] [--connections 32]
 *     [--rounds 2] [--log-level info] [--runner-threads 1] [--baseline-ref <git ref>]   (npm run bench:gateway -- …)
 *
 * `--upstream runner` (default): the REAL runner (`twinserve serve`) on the bundled demo package
 * (zoo/fashion/package), registered with the gateway and called signed, with one Fashion-MNIST test image
 * (docs/examples/ankle-boot.json) per request. `--upstream stand-in`: the runner stand-in
 * (gateway/dev/runner-stand-in.ts: verifies the HMAC, sums the input, no model), which isolates the gateway's own
 * cost. `--baseline-ref`: the gateway as of that commit (git archive into a temporary directory) runs beside the
 * current one, as one more interleaved arm in front of the same upstream — a before/after of gateway changes in
 * one run. autocannon runs as a separate process; all processes share this machine's cores.
 * @module
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { RUNNER_REGISTRY_PATHS, signRequest } from '@twinserve/shared'
import * as localGateway from '../gateway/dev/local-gateway.ts'
import { REPO_ROOT } from '../gateway/dev/local-gateway.ts'
import { RunnerStandIn } from '../gateway/dev/runner-stand-in.ts'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
    'log-level': { type: 'string', default: 'info' },
    upstream: { type: 'string', default: 'runner' },
    'runner-threads': { type: 'string', default: '1' },
    'baseline-ref': { type: 'string' },
  },
})
const UPSTREAM = args.upstream === 'stand-in' ? 'stand-in' : 'runner'
if (args.upstream !== UPSTREAM) throw new Error(`--upstream must be runner or stand-in`)
const DURATION_S = Number(args.duration)
const CONNECTIONS = Number(args.connections)
const ROUNDS = Number(args.rounds)

const SECRET = `bench-${crypto.randomUUID()}`
const ADMIN = `bench-admin-${crypto.randomUUID()}`
const DEMO_PACKAGE = join(REPO_ROOT, 'zoo', 'fashion', 'package')
const MODEL =
  UPSTREAM === 'runner'
    ? (JSON.parse(await readFile(join(DEMO_PACKAGE, 'manifest.json'), 'utf8')) as { name: string })
        .name
    : 'demo'
// One Fashion-MNIST test image (28x28 as FP32 [1, 784]), the request the quick start prints.
const BODY = JSON.stringify(
  JSON.parse(await readFile(join(REPO_ROOT, 'docs', 'examples', 'ankle-boot.json'), 'utf8')),
)

/** An upstream the gateway routes to: its URL and how to stop it. */
interface Upstream {
  url: string
  describe: string
  stop(): Promise<void>
}

/** The real runner on the demo package, registered with the gateway (it heartbeats on its own). */
async function startRunner(gatewayUrl: string): Promise<Upstream> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'gpu-runner', 'bin', 'twinserve.mjs'),
      'serve',
      '--package',
      DEMO_PACKAGE,
      '--port',
      '0',
      '--provider',
      'cpu',
      '--threads',
      String(args['runner-threads']),
      '--gateway-url',
      gatewayUrl,
      '--runner-id',
      'bench-runner',
      '--log-level',
      'warn',
    ],
    { env: { ...process.env, RUNNER_SIGNING_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const deadline = Date.now() + 60_000
  let url = ''
  while (!url) {
    // At --log-level warn the runner does not log its URL; the registry has it once it registered.
    if (child.exitCode !== null) throw new Error(`runner exited early:\n${out}`)
    if (Date.now() > deadline) throw new Error(`runner did not register:\n${out}`)
    await new Promise((r) => setTimeout(r, 100))
    url = await registeredUrl(gatewayUrl)
  }
  return {
    url,
    describe: `real runner (twinserve serve, demo package '${MODEL}', CPU, ${args['runner-threads']} intra-op thread(s), default dynamic batching)`,
    async stop() {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/** The URL bench-runner registered with, once it has (admin API), else ''. */
async function registeredUrl(gatewayUrl: string): Promise<string> {
  const res = await fetch(`${gatewayUrl}/admin/runners`, {
    headers: { authorization: `Bearer ${ADMIN}` },
  })
  if (!res.ok) return ''
  const list = (await res.json()) as { runners: { runner_id: string; url: string }[] }
  return list.runners.find((r) => r.runner_id === 'bench-runner')?.url ?? ''
}

interface Result {
  arm: string
  rps: number
  p50: number
  p99: number
  mean: number
  total: number
  non2xx: number
  errors: number
}

function autocannon(
  url: string,
  headers: Record<string, string>,
  durationS: number,
  method: 'GET' | 'POST' = 'POST',
): Promise<Result & { raw: unknown }> {
  const bin = join(REPO_ROOT, 'node_modules', 'autocannon', 'autocannon.js')
  const hs = Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}=${v}`])
  const argv = [
    bin,
    '-c',
    String(CONNECTIONS),
    '-d',
    String(durationS),
    '-m',
    method,
    ...hs,
    ...(method === 'POST' ? ['-b', BODY] : []),
    '-j',
    url,
  ]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString()
    })
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited ${code}: ${err}`))
      const r = JSON.parse(out) as {
        requests: { average: number; total: number }
        latency: { p50: number; p99: number; average: number }
        non2xx: number
        errors: number
      }
      resolve({
        arm: '',
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        mean: r.latency.average,
        total: r.requests.total,
        non2xx: r.non2xx,
        errors: r.errors,
        raw: r,
      })
    })
  })
}

/**
 * Registers `upstreamUrl` with a gateway by hand (signed, as a runner would) and keeps it alive with heartbeats;
 * returns the function that stops the heartbeats.
 */
async function registerByHand(gatewayUrl: string, upstreamUrl: string): Promise<() => void> {
  const registration = JSON.stringify({
    runner_id: 'bench-runner',
    url: upstreamUrl,
    provider: 'cpu',
    models: [{ name: MODEL, variants: ['shared'], experts: ['a'], ready: true }],
    load: { queue_depth: 0, in_flight: 0, capacity: 1024 },
  })
  const membership = async (path: string) => {
    const signed = await signRequest(SECRET, { method: 'POST', path, body: registration })
    const res = await fetch(gatewayUrl + path, {
      method: 'POST',
      headers: { ...signed, 'content-type': 'application/json' },
      body: registration,
    })
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  }
  await membership(RUNNER_REGISTRY_PATHS.register)
  const heartbeat = setInterval(() => {
    membership(RUNNER_REGISTRY_PATHS.heartbeat).catch((e: unknown) => console.error(e))
  }, 4000)
  return () => clearInterval(heartbeat)
}

/** The stand-in upstream, registered by hand. */
async function startStandIn(gatewayUrl: string): Promise<Upstream> {
  const standIn = await RunnerStandIn.start('bench-runner', [MODEL], SECRET)
  const stopHeartbeat = await registerByHand(gatewayUrl, standIn.stats.url)
  return {
    url: standIn.stats.url,
    describe: 'runner stand-in (no model compute)',
    async stop() {
      stopHeartbeat()
      await standIn.kill()
    },
  }
}

interface BenchGateway {
  url: string
  key: string
  stop(): Promise<void>
}

/** A gateway from `mod` (this checkout's gateway/dev, or a baseline's) with its own state and an infer key. */
async function startGateway(mod: typeof localGateway): Promise<BenchGateway> {
  const dir = await mkdtemp(join(tmpdir(), 'twinserve-bench-gw-'))
  await mod.applyLocalMigrations({ persistTo: dir })
  const gw = await mod.startLocalGateway({
    persistTo: dir,
    vars: {
      RUNNER_SIGNING_SECRET: SECRET,
      ADMIN_BOOTSTRAP_SECRET: ADMIN,
      RATE_LIMIT_RPS: '1000000',
      RATE_LIMIT_BURST: '1000000',
      LOG_LEVEL: String(args['log-level']),
    },
    startTimeoutMs: 60_000,
  })
  const created = await fetch(`${gw.url}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', scopes: ['infer'], models: [MODEL] }),
  })
  const { key } = (await created.json()) as { key: string }
  return {
    url: gw.url,
    key,
    async stop() {
      await gw.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * The gateway as of `ref`: its gateway/ and wrangler.toml from `git archive`, beside this checkout's
 * node_modules and workspaces (symlinked), started through its own gateway/dev helpers.
 */
async function baselineGateway(ref: string): Promise<BenchGateway & { commit: string }> {
  const commit = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', ref])
    .toString()
    .trim()
  const dir = await mkdtemp(join(tmpdir(), `twinserve-bench-baseline-${commit}-`))
  execFileSync('sh', [
    '-c',
    'git -C "$1" archive "$2" gateway wrangler.toml tsconfig.base.json | tar -x -C "$3"',
    'sh',
    REPO_ROOT,
    ref,
    dir,
  ])
  for (const link of ['node_modules', 'shared', 'gpu-runner'])
    await symlink(join(REPO_ROOT, link), join(dir, link))
  const mod = (await import(join(dir, 'gateway', 'dev', 'local-gateway.ts'))) as typeof localGateway
  const gw = await startGateway(mod)
  return {
    ...gw,
    commit,
    async stop() {
      await gw.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

async function main(): Promise<void> {
  const gw = await startGateway(localGateway)
  const runner = UPSTREAM === 'runner' ? await startRunner(gw.url) : await startStandIn(gw.url)
  const baselineRef = args['baseline-ref']
  const baseline = baselineRef ? await baselineGateway(baselineRef) : undefined
  const stopBaselineHeartbeat = baseline
    ? await registerByHand(baseline.url, runner.url)
    : undefined

  try {
    const { key } = gw
    const path = `/v2/models/${MODEL}/infer`
    type Arm = { url: string; headers: Record<string, string>; method: 'GET' | 'POST' }
    const arms: Record<string, () => Promise<Arm>> = {
      direct: async () => ({
        url: runner.url + path,
        method: 'POST',
        // Signed once per arm: the signature is valid for 5 minutes and the body never changes.
        headers: {
          'content-type': 'application/json',
          ...(await signRequest(SECRET, { method: 'POST', path, body: BODY })),
        },
      }),
      gateway: async () => ({
        url: gw.url + path,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      }),
    }
    if (baseline)
      arms[`gateway@${baseline.commit}`] = async () => ({
        url: baseline.url + path,
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${baseline.key}` },
      })
    // Reference points inside the same gateway, to split its cost: the workerd/wrangler request floor (no I/O),
    // and auth + rate limit + routing snapshot without an upstream call.
    const references: Record<string, () => Promise<Arm>> = {
      'gateway GET /v2/health/live': async () => ({
        url: `${gw.url}/v2/health/live`,
        method: 'GET',
        headers: {},
      }),
      [`gateway GET /v2/models/${MODEL}/ready`]: async () => ({
        url: `${gw.url}/v2/models/${MODEL}/ready`,
        method: 'GET',
        headers: { authorization: `Bearer ${key}` },
      }),
    }

    // Warm both paths (isolate start, DO creation, JIT) before measuring.
    for (const arm of Object.values(arms)) {
      const a = await arm()
      await autocannon(a.url, a.headers, 3, a.method)
    }
    const load0 = loadavg()[0]?.toFixed(1)
    const results: Result[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      // Every other round runs the arms in reverse, so a drift in the machine's load favours no arm.
      const order = Object.entries(arms)
      if (round % 2 === 0) order.reverse()
      for (const [name, arm] of order) {
        const a = await arm()
        const { raw: _raw, ...r } = await autocannon(a.url, a.headers, DURATION_S, a.method)
        results.push({ ...r, arm: `${name} (round ${round})` })
        console.error(
          `${name} round ${round}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`,
        )
      }
    }
    for (const [name, arm] of Object.entries(references)) {
      const a = await arm()
      const { raw: _raw, ...r } = await autocannon(a.url, a.headers, DURATION_S, a.method)
      results.push({ ...r, arm: `${name} (reference)` })
      console.error(`${name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms`)
    }

    const avg = (name: string, k: 'rps' | 'p50' | 'p99') => {
      const rs = results.filter((r) => r.arm.startsWith(`${name} (round`))
      return rs.reduce((a, r) => a + r[k], 0) / rs.length
    }
    const lines = [
      `- **Command:** \`node --import tsx bench/gateway-overhead.ts --upstream ${UPSTREAM} --duration ${DURATION_S} --connections ${CONNECTIONS} --rounds ${ROUNDS} --log-level ${args['log-level']}${UPSTREAM === 'runner' ? ` --runner-threads ${args['runner-threads']}` : ''}${baselineRef ? ` --baseline-ref ${baselineRef}` : ''}\``,
      `- **Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpus()[0]?.model ?? '?'}", ${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}; gateway in workerd via wrangler dev (local D1 + Durable Objects); upstream: ${runner.describe}; load: autocannon, ${CONNECTIONS} connections, ${DURATION_S} s per arm, arms interleaved; load average (1 min) ${load0} at the start, ${loadavg()[0]?.toFixed(1)} at the end.`,
      '',
      '| arm | req/s | p50 (ms) | p99 (ms) | mean (ms) | requests | non-2xx | errors |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
      ...results.map(
        (r) =>
          `| ${r.arm} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.mean.toFixed(2)} | ${r.total} | ${r.non2xx} | ${r.errors} |`,
      ),
      '',
      `Through the gateway vs direct (means over rounds): throughput **${(avg('gateway', 'rps') / avg('direct', 'rps')).toFixed(3)}×** (${avg('gateway', 'rps').toFixed(0)} vs ${avg('direct', 'rps').toFixed(0)} req/s); added latency p50 **+${(avg('gateway', 'p50') - avg('direct', 'p50')).toFixed(1)} ms** (${avg('gateway', 'p50').toFixed(1)} vs ${avg('direct', 'p50').toFixed(1)}), p99 **+${(avg('gateway', 'p99') - avg('direct', 'p99')).toFixed(1)} ms** (${avg('gateway', 'p99').toFixed(1)} vs ${avg('direct', 'p99').toFixed(1)}).`,
    ]
    if (baseline) {
      const b = `gateway@${baseline.commit}`
      lines.push(
        '',
        `This checkout's gateway vs ${b} (means over rounds): throughput **${(avg('gateway', 'rps') / avg(b, 'rps')).toFixed(2)}×** (${avg('gateway', 'rps').toFixed(0)} vs ${avg(b, 'rps').toFixed(0)} req/s); p50 ${avg('gateway', 'p50').toFixed(1)} vs ${avg(b, 'p50').toFixed(1)} ms, p99 ${avg('gateway', 'p99').toFixed(1)} vs ${avg(b, 'p99').toFixed(1)} ms.`,
      )
    }
    console.log(lines.join('\n'))
    if (results.some((r) => r.non2xx > 0 || r.errors > 0))
      console.error('warning: some requests failed; see the non-2xx / errors columns')
  } finally {
    stopBaselineHeartbeat?.()
    await runner.stop()
    await baseline?.stop()
    await gw.stop()
  }
}

await main()
