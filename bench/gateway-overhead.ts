/**
 * Gateway overhead: throughput and latency (p50/p99) of V2 inference straight to a runner versus through the
 * gateway (workerd under `wrangler dev`, D1 + Durable Objects), same run, concurrency 32, arms interleaved.
 *
 *   node --import tsx bench/gateway-overhead.ts [--duration 10] [--connections 32] [--rounds 2]
 *
 * The upstream is the runner STAND-IN (gateway/dev/runner-stand-in.ts: verifies the HMAC, sums the input), so
 * the difference between the arms is the gateway's own cost: auth (D1), rate limit (DO), routing (DO), signing,
 * validating request and response, and the metrics report. autocannon runs as a separate process.
 * @module
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { RUNNER_REGISTRY_PATHS, signRequest } from '@twinserve/shared'
import { applyLocalMigrations, REPO_ROOT, startLocalGateway } from '../gateway/dev/local-gateway.ts'
import { RunnerStandIn } from '../gateway/dev/runner-stand-in.ts'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '2' },
    'log-level': { type: 'string', default: 'info' },
  },
})
const DURATION_S = Number(args.duration)
const CONNECTIONS = Number(args.connections)
const ROUNDS = Number(args.rounds)

const SECRET = `bench-${crypto.randomUUID()}`
const ADMIN = `bench-admin-${crypto.randomUUID()}`
const MODEL = 'demo'
// A Fashion-MNIST-sized request: one 28x28 image as FP32.
const BODY = JSON.stringify({
  inputs: [
    {
      name: 'pixels',
      shape: [1, 784],
      datatype: 'FP32',
      data: Array.from({ length: 784 }, (_, i) => Math.round(((i * 37) % 255) * 100) / 25500),
    },
  ],
})

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

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'twinserve-bench-gw-'))
  const runner = await RunnerStandIn.start('bench-runner', [MODEL], SECRET)
  await applyLocalMigrations({ persistTo: dir })
  const gw = await startLocalGateway({
    persistTo: dir,
    vars: {
      RUNNER_SIGNING_SECRET: SECRET,
      ADMIN_BOOTSTRAP_SECRET: ADMIN,
      RATE_LIMIT_RPS: '1000000',
      RATE_LIMIT_BURST: '1000000',
      LOG_LEVEL: String(args['log-level']),
    },
  })
  const registration = JSON.stringify({
    runner_id: 'bench-runner',
    url: runner.stats.url,
    provider: 'cpu',
    models: [{ name: MODEL, variants: ['shared'], experts: ['a'], ready: true }],
    load: { queue_depth: 0, in_flight: 0, capacity: 1024 },
  })
  const membership = async (path: string) => {
    const signed = await signRequest(SECRET, { method: 'POST', path, body: registration })
    const res = await fetch(gw.url + path, {
      method: 'POST',
      headers: { ...signed, 'content-type': 'application/json' },
      body: registration,
    })
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`)
  }
  await membership(RUNNER_REGISTRY_PATHS.register)
  // Heartbeat like a runner would, so the registration does not expire during long arms.
  const heartbeat = setInterval(() => {
    membership(RUNNER_REGISTRY_PATHS.heartbeat).catch((e: unknown) => console.error(e))
  }, 4000)

  try {
    const created = await fetch(`${gw.url}/admin/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tenant: 'bench', scopes: ['infer'], models: [MODEL] }),
    })
    const { key } = (await created.json()) as { key: string }
    const path = `/v2/models/${MODEL}/infer`
    type Arm = { url: string; headers: Record<string, string>; method: 'GET' | 'POST' }
    const arms: Record<string, () => Promise<Arm>> = {
      direct: async () => ({
        url: runner.stats.url + path,
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
    // Reference points inside the same gateway, to split its cost: the workerd/wrangler request floor (no I/O),
    // and auth + rate limit + routing snapshot without an upstream call.
    const references: Record<string, () => Promise<Arm>> = {
      'gateway GET /v2/health/live': async () => ({
        url: `${gw.url}/v2/health/live`,
        method: 'GET',
        headers: {},
      }),
      'gateway GET /v2/models/demo/ready': async () => ({
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
    const results: Result[] = []
    for (let round = 1; round <= ROUNDS; round++)
      for (const [name, arm] of Object.entries(arms)) {
        const a = await arm()
        const { raw: _raw, ...r } = await autocannon(a.url, a.headers, DURATION_S, a.method)
        results.push({ ...r, arm: `${name} (round ${round})` })
        console.error(
          `${name} round ${round}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms`,
        )
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
      `- **Command:** \`node --import tsx bench/gateway-overhead.ts --duration ${DURATION_S} --connections ${CONNECTIONS} --rounds ${ROUNDS} --log-level ${args['log-level']}\``,
      `- **Date:** ${new Date().toISOString().slice(0, 10)}. **Machine:** \`nproc\` = ${cpus().length}, CPU "${cpus()[0]?.model ?? '?'}", ${(totalmem() / 2 ** 30).toFixed(0)} GB; Node ${process.version}; gateway in workerd via wrangler dev (local D1 + Durable Objects); upstream: runner stand-in (no model compute); load: autocannon, ${CONNECTIONS} connections, ${DURATION_S} s per arm, arms interleaved.`,
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
    console.log(lines.join('\n'))
    if (results.some((r) => r.non2xx > 0 || r.errors > 0))
      console.error('warning: some requests failed; see the non-2xx / errors columns')
  } finally {
    clearInterval(heartbeat)
    await gw.stop()
    await runner.kill()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
