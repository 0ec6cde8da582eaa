/**
 * Gateway overhead: throughput, latency (p50/p99) and CPU per request of V2 inference straight to a runner versus
 * through the gateway, same run, arms interleaved: at concurrency 32 (throughput) and at concurrency 1 (added
 * latency), beside the same gateway's bare `GET /v2/health/live` (its request floor), against issue #17's goals.
 *
 *   node --import tsx bench/gateway-overhead.ts [--gateway bare|wrangler] [--upstream runner|stand-in]
 *     [--duration 10] [--connections 32] [--rounds 2] [--log-level info] [--runner-threads 1]
 *     [--baseline-ref <git ref>] [--profile <file.cpuprofile>]                  (npm run bench:gateway -- …)
 *
 * `--gateway bare` (default): the `wrangler deploy --dry-run` bundle in one bare workerd process
 * (bench/bare-gateway.ts: local D1, Durable Objects and rate-limit binding in that process), the closest this
 * machine gets to production; its CPU per request is that process's user + system time (/proc) over the arm,
 * divided by the requests answered, local D1 and Durable Object work included. `--gateway wrangler`: the gateway
 * under `wrangler dev` (its proxy Worker and a second workerd in front); CPU is then every process wrangler
 * started. `--profile`: after the measured arms, a CPU profile of the gateway isolate (inspector, bare only)
 * during one more inference arm, saved to that file, its top frames printed.
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
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { RUNNER_REGISTRY_PATHS, signRequest } from '@twinserve/shared'
import type * as localGateway from '../gateway/dev/local-gateway.ts'
import { REPO_ROOT } from '../gateway/dev/local-gateway.ts'
import { RunnerStandIn } from '../gateway/dev/runner-stand-in.ts'
import { startBareGateway } from './bare-gateway.ts'
import { profileIsolate, topFrames } from './isolate-profile.ts'
import { cpuMs, descendants } from './process-cpu.ts'
import type { LoadSpec } from './signed-load.ts'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
    'log-level': { type: 'string', default: 'info' },
    upstream: { type: 'string', default: 'runner' },
    'runner-threads': { type: 'string', default: '1' },
    'baseline-ref': { type: 'string' },
    gateway: { type: 'string', default: 'bare' },
    profile: { type: 'string' },
  },
})
const GATEWAY = args.gateway === 'wrangler' ? 'wrangler' : 'bare'
if (args.gateway !== GATEWAY) throw new Error(`--gateway must be bare or wrangler`)
if (args.profile && GATEWAY !== 'bare') throw new Error('--profile needs --gateway bare')
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
  /** The gateway's CPU (ms) per answered request over the arm; undefined for arms that bypass it. */
  cpuMsPerReq?: number
}

/** One arm's load (bench/signed-load.ts, its own process) and autocannon's figures. */
function autocannon(arm: Arm, durationS: number): Promise<Result & { raw: unknown }> {
  const spec: LoadSpec = {
    url: arm.url,
    method: arm.method,
    headers: arm.headers,
    connections: arm.connections,
    durationS,
    ...(arm.method === 'POST' ? { body: BODY } : {}),
    ...(arm.sign ? { sign: arm.sign } : {}),
  }
  const argv = ['--import', 'tsx', join(REPO_ROOT, 'bench', 'signed-load.ts')]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'pipe'] })
    child.stdin.end(JSON.stringify(spec))
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
  /** The processes whose CPU is the gateway's (bare: the workerd; wrangler: everything wrangler dev started). */
  cpuPids(): number[]
  /** The bare workerd's inspector port, when it has one. */
  inspectorPort?: number
  stop(): Promise<void>
}

/**
 * A gateway from the checkout at `root` (this one, or a baseline's) with its own state and an infer key: bare
 * workerd of its dry-run bundle, or `wrangler dev` through its own gateway/dev helpers.
 */
async function startGateway(root: string, inspect: boolean): Promise<BenchGateway> {
  const mod = (await import(
    join(root, 'gateway', 'dev', 'local-gateway.ts')
  )) as typeof localGateway
  const dir = await mkdtemp(join(tmpdir(), 'twinserve-bench-gw-'))
  await mod.applyLocalMigrations({ persistTo: dir })
  const vars = {
    RUNNER_SIGNING_SECRET: SECRET,
    ADMIN_BOOTSTRAP_SECRET: ADMIN,
    RATE_LIMIT_RPS: '1000000',
    RATE_LIMIT_BURST: '1000000',
    LOG_LEVEL: String(args['log-level']),
  }
  let gw: { url: string; stop(): Promise<void> }
  let cpuPids: () => number[]
  let inspectorPort: number | undefined
  if (GATEWAY === 'bare') {
    inspectorPort = inspect ? await mod.freePort() : undefined
    // One client IP sends every request: the per-IP pre-auth allowance is raised like the key's limit.
    const bare = await startBareGateway({
      root,
      persist: dir,
      vars,
      preauthLimit: 10_000_000,
      ...(inspectorPort ? { inspectorPort } : {}),
    })
    gw = bare
    cpuPids = () => [bare.workerdPid]
  } else {
    const dev = await mod.startLocalGateway({ persistTo: dir, vars, startTimeoutMs: 60_000 })
    gw = dev
    const pid = dev.process.pid ?? 0
    cpuPids = () => [pid, ...descendants(pid)]
  }
  const created = await fetch(`${gw.url}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant: 'bench', scopes: ['infer'], models: [MODEL] }),
  })
  const { key } = (await created.json()) as { key: string }
  return {
    url: gw.url,
    key,
    cpuPids,
    ...(inspectorPort ? { inspectorPort } : {}),
    async stop() {
      await gw.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

/**
 * The gateway as of `ref`: its gateway/ and wrangler.toml from `git archive`, beside this checkout's
 * node_modules and workspaces (symlinked), started the same way as this checkout's.
 */
async function baselineGateway(ref: string): Promise<BenchGateway & { commit: string }> {
  const commit = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', ref])
    .toString()
    .trim()
  const dir = await mkdtemp(join(tmpdir(), `twinserve-bench-baseline-${commit}-`))
  execFileSync('sh', [
    '-c',
    'git -C "$1" archive "$2" gateway shared wrangler.toml tsconfig.base.json | tar -x -C "$3"',
    'sh',
    REPO_ROOT,
    ref,
    dir,
  ])
  await symlink(join(REPO_ROOT, 'gpu-runner'), join(dir, 'gpu-runner'))
  // This checkout's packages, except the workspace's own shared package: the baseline's, from the same commit
  // (a change to shared/ is a gateway change too).
  await mkdir(join(dir, 'node_modules', '@twinserve'), { recursive: true })
  for (const entry of await readdir(join(REPO_ROOT, 'node_modules')))
    if (entry !== '@twinserve')
      await symlink(join(REPO_ROOT, 'node_modules', entry), join(dir, 'node_modules', entry))
  for (const entry of await readdir(join(REPO_ROOT, 'node_modules', '@twinserve')))
    await symlink(
      entry === 'shared'
        ? join(dir, 'shared')
        : join(REPO_ROOT, 'node_modules', '@twinserve', entry),
      join(dir, 'node_modules', '@twinserve', entry),
    )
  const gw = await startGateway(dir, false)
  return {
    ...gw,
    commit,
    async stop() {
      await gw.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}

type Arm = {
  url: string
  headers: Record<string, string>
  method: 'GET' | 'POST'
  connections: number
  /** The gateway whose CPU this arm's requests cost (none for the direct arms). */
  gateway?: BenchGateway
  /** Each request signed for the runner (direct arms). */
  sign?: LoadSpec['sign']
}

/** Each gateway's CPU while no arm targeted it (heartbeats, alarms, flushes): its idle rate, ms per ms. */
const idle = new Map<BenchGateway, { cpuMs: number; wallMs: number }>()

/**
 * One arm run: autocannon's figures and, through a gateway, the CPU it spent over the arm (`cpuMs`, net of
 * its idle rate once every arm has run: netCpu). Every gateway's CPU is read around every arm, so that the ones
 * the arm did not call measure their idle rate meanwhile.
 */
async function runArm(
  name: string,
  arm: Arm,
  durationS: number,
  gateways: BenchGateway[],
): Promise<Result & { gateway?: BenchGateway; cpuMs?: number; wallMs: number }> {
  const before = gateways.map((g) => cpuMs(g.cpuPids()))
  const started = performance.now()
  const { raw: _raw, ...r } = await autocannon(arm, durationS)
  const wallMs = performance.now() - started
  let own: number | undefined
  gateways.forEach((g, i) => {
    const spent = cpuMs(g.cpuPids()) - (before[i] ?? 0)
    if (g === arm.gateway) own = spent
    else {
      const sum = idle.get(g) ?? { cpuMs: 0, wallMs: 0 }
      idle.set(g, { cpuMs: sum.cpuMs + spent, wallMs: sum.wallMs + wallMs })
    }
  })
  console.error(
    `${name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms${
      own === undefined ? '' : `, gateway CPU ${(own / r.total).toFixed(2)} ms/req (gross)`
    }`,
  )
  return {
    ...r,
    arm: name,
    wallMs,
    ...(arm.gateway && own !== undefined ? { gateway: arm.gateway, cpuMs: own } : {}),
  }
}

/** CPU per answered request, less what the gateway spends idle over the same time. */
function netCpu(r: { gateway?: BenchGateway; cpuMs?: number; wallMs: number; total: number }) {
  if (!r.gateway || r.cpuMs === undefined) return undefined
  const rest = idle.get(r.gateway)
  const rate = rest && rest.wallMs > 0 ? rest.cpuMs / rest.wallMs : 0
  return (r.cpuMs - rate * r.wallMs) / r.total
}

const fmt = (v: number | undefined, digits = 2) => (v === undefined ? '–' : v.toFixed(digits))

async function main(): Promise<void> {
  const gw = await startGateway(REPO_ROOT, args.profile !== undefined)
  const runner = UPSTREAM === 'runner' ? await startRunner(gw.url) : await startStandIn(gw.url)
  const baselineRef = args['baseline-ref']
  const baseline = baselineRef ? await baselineGateway(baselineRef) : undefined
  const stopBaselineHeartbeat = baseline
    ? await registerByHand(baseline.url, runner.url)
    : undefined

  try {
    const path = `/v2/models/${MODEL}/infer`
    // Signed per request, as the gateway does (the runner refuses a replayed nonce).
    const direct = async (connections: number): Promise<Arm> => ({
      url: runner.url + path,
      method: 'POST',
      connections,
      headers: { 'content-type': 'application/json' },
      sign: { secret: SECRET, path },
    })
    const infer = (g: BenchGateway, connections: number): Arm => ({
      url: g.url + path,
      method: 'POST',
      connections,
      gateway: g,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${g.key}` },
    })
    const live = (g: BenchGateway): Arm => ({
      url: `${g.url}/v2/health/live`,
      method: 'GET',
      connections: CONNECTIONS,
      gateway: g,
      headers: {},
    })
    const gateways: [string, BenchGateway][] = [
      ['gateway', gw],
      ...(baseline ? [[`gateway@${baseline.commit}`, baseline] as [string, BenchGateway]] : []),
    ]
    // Throughput at c = CONNECTIONS, the health floor of each build beside it, and added latency at c = 1.
    const arms: Record<string, () => Promise<Arm>> = {
      direct: () => direct(CONNECTIONS),
      ...Object.fromEntries(
        gateways.flatMap(([name, g]) => [
          [name, async () => infer(g, CONNECTIONS)],
          [`${name} GET /v2/health/live`, async () => live(g)],
        ]),
      ),
      'direct c=1': () => direct(1),
      ...Object.fromEntries(gateways.map(([name, g]) => [`${name} c=1`, async () => infer(g, 1)])),
    }
    // After the rounds: auth + rate limit + routing snapshot without an upstream call.
    const references: Record<string, () => Promise<Arm>> = {
      [`gateway GET /v2/models/${MODEL}/ready`]: async () => ({
        url: `${gw.url}/v2/models/${MODEL}/ready`,
        method: 'GET',
        connections: CONNECTIONS,
        gateway: gw,
        headers: { authorization: `Bearer ${gw.key}` },
      }),
    }

    // Warm every path (isolate start, DO creation, JIT) before measuring.
    for (const arm of Object.values(arms)) {
      const a = await arm()
      await autocannon(a, 3)
    }
    const load0 = loadavg()[0]?.toFixed(1)
    const all = gateways.map(([, g]) => g)
    const runs: Awaited<ReturnType<typeof runArm>>[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      // Every other round runs the arms in reverse, so a drift in the machine's load favours no arm.
      const order = Object.entries(arms)
      if (round % 2 === 0) order.reverse()
      for (const [name, arm] of order)
        runs.push(await runArm(`${name} (round ${round})`, await arm(), DURATION_S, all))
    }
    for (const [name, arm] of Object.entries(references))
      runs.push(await runArm(`${name} (reference)`, await arm(), DURATION_S, all))
    const results: Result[] = runs.map((run) => {
      const { gateway: _gateway, cpuMs: _cpuMs, wallMs: _wallMs, ...r } = run
      const cpu = netCpu(run)
      return { ...r, ...(cpu !== undefined ? { cpuMsPerReq: cpu } : {}) }
    })
    const idleRates = gateways.map(([name, g]) => {
      const rest = idle.get(g)
      return `${name} ${rest ? ((1000 * rest.cpuMs) / rest.wallMs).toFixed(0) : '?'} ms/s`
    })

    const avg = (name: string, k: 'rps' | 'p50' | 'p99' | 'mean' | 'cpuMsPerReq') => {
      const rs = results.filter((r) => r.arm.startsWith(`${name} (round`))
      return rs.reduce((a, r) => a + (r[k] ?? 0), 0) / rs.length
    }
    const goals = (name: string) => ({
      healthRatio: avg(name, 'rps') / avg(`${name} GET /v2/health/live`, 'rps'),
      addedP50: avg(`${name} c=1`, 'p50') - avg('direct c=1', 'p50'),
      addedMean: avg(`${name} c=1`, 'mean') - avg('direct c=1', 'mean'),
      cpu: avg(name, 'cpuMsPerReq'),
      cpu1: avg(`${name} c=1`, 'cpuMsPerReq'),
      cpuLive: avg(`${name} GET /v2/health/live`, 'cpuMsPerReq'),
    })
    const mine = goals('gateway')
    const base = baseline ? goals(`gateway@${baseline.commit}`) : undefined
    const met = (ok: boolean) => (ok ? 'met' : 'not met')
    const lines = [
      `- **Command:** \`node --import tsx bench/gateway-overhead.ts --gateway ${GATEWAY} --upstream ${UPSTREAM} --duration ${DURATION_S} --connections ${CONNECTIONS} --rounds ${ROUNDS} --log-level ${args['log-level']}${UPSTREAM === 'runner' ? ` --runner-threads ${args['runner-threads']}` : ''}${baselineRef ? ` --baseline-ref ${baselineRef}` : ''}${args.profile ? ` --profile ${args.profile}` : ''}\``,
      `- **Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpus()[0]?.model ?? '?'}", ${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}; gateway: ${GATEWAY === 'bare' ? 'the dry-run bundle in one bare workerd (Miniflare; local D1, Durable Objects, rate-limit binding in that process); CPU = that process' : 'workerd via wrangler dev (local D1 + Durable Objects); CPU = every process wrangler started'}; upstream: ${runner.describe}; load: autocannon, ${CONNECTIONS} and 1 connection(s), ${DURATION_S} s per arm, arms interleaved; load average (1 min) ${load0} at the start, ${loadavg()[0]?.toFixed(1)} at the end.`,
      '',
      '| arm | req/s | p50 (ms) | p99 (ms) | mean (ms) | requests | non-2xx | errors | gateway CPU (ms/req, net of idle) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
      ...results.map(
        (r) =>
          `| ${r.arm} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.mean.toFixed(2)} | ${r.total} | ${r.non2xx} | ${r.errors} | ${fmt(r.cpuMsPerReq)} |`,
      ),
      '',
      `Gateway CPU per request is the gateway process's user + system time over the arm, less its idle rate (measured while the other arms ran: ${idleRates.join(', ')}), divided by the requests answered.`,
      '',
      `Issue #17's goals (means over rounds)${base ? `, this checkout vs gateway@${baseline?.commit}` : ''}:`,
      '',
      `| goal | gateway${base ? ` | gateway@${baseline?.commit}` : ''} | target | this checkout |`,
      `| --- | --- |${base ? ' --- |' : ''} --- | --- |`,
      `| inference rate / same build's /v2/health/live rate (c = ${CONNECTIONS}) | ${mine.healthRatio.toFixed(2)}× |${base ? ` ${base.healthRatio.toFixed(2)}× |` : ''} ≥ 0.8× | ${met(mine.healthRatio >= 0.8)} |`,
      `| p50 added latency over direct at c = 1 (mean in brackets) | +${mine.addedP50.toFixed(1)} ms (+${mine.addedMean.toFixed(2)}) |${base ? ` +${base.addedP50.toFixed(1)} ms (+${base.addedMean.toFixed(2)}) |` : ''} ≤ 3 ms | ${met(mine.addedP50 <= 3)} |`,
      `| gateway CPU per inference request (c = ${CONNECTIONS}; c = 1 in brackets) | ${mine.cpu.toFixed(2)} ms (${mine.cpu1.toFixed(2)}) |${base ? ` ${base.cpu.toFixed(2)} ms (${base.cpu1.toFixed(2)}) |` : ''} ≤ 1 ms | ${met(mine.cpu <= 1)} |`,
      `| gateway CPU per /v2/health/live request (the floor) | ${mine.cpuLive.toFixed(2)} ms |${base ? ` ${base.cpuLive.toFixed(2)} ms |` : ''} – | – |`,
      '',
      `Through the gateway vs direct (c = ${CONNECTIONS}): throughput **${(avg('gateway', 'rps') / avg('direct', 'rps')).toFixed(3)}×** (${avg('gateway', 'rps').toFixed(0)} vs ${avg('direct', 'rps').toFixed(0)} req/s); added latency p50 **+${(avg('gateway', 'p50') - avg('direct', 'p50')).toFixed(1)} ms**, p99 **+${(avg('gateway', 'p99') - avg('direct', 'p99')).toFixed(1)} ms**.`,
    ]
    if (baseline) {
      const b = `gateway@${baseline.commit}`
      lines.push(
        '',
        `This checkout's gateway vs ${b} (c = ${CONNECTIONS}): throughput **${(avg('gateway', 'rps') / avg(b, 'rps')).toFixed(2)}×** (${avg('gateway', 'rps').toFixed(0)} vs ${avg(b, 'rps').toFixed(0)} req/s); CPU per request ${mine.cpu.toFixed(2)} vs ${base?.cpu.toFixed(2)} ms.`,
      )
    }
    if (args.profile && gw.inspectorPort) {
      const a = infer(gw, CONNECTIONS)
      const profile = await profileIsolate(gw.inspectorPort, 'twinserve-gateway', async () => {
        await autocannon(a, DURATION_S)
      })
      await writeFile(args.profile, JSON.stringify(profile))
      const top = topFrames(profile, 15)
      lines.push(
        '',
        `CPU profile of the gateway isolate during one more inference arm (c = ${CONNECTIONS}, ${DURATION_S} s, inspector attached, 200 µs sampling; ${top.busyMs.toFixed(0)} ms busy; \`${args.profile}\`), top frames by self time:`,
        '',
        '| frame | self | self (ms) |',
        '| --- | --- | --- |',
        ...top.frames.map(
          (f) => `| \`${f.name}\` | ${(100 * f.selfShare).toFixed(1)} % | ${f.selfMs.toFixed(0)} |`,
        ),
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
