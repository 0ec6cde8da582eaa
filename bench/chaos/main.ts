/**
 * `npm run chaos`: issue #16's faults as a deployment sees them, repeatable and bounded (a few minutes), on
 * loopback only, with real processes: the gateway as one bare workerd (bench/bare-gateway.ts: the bundle
 * `wrangler deploy` would upload, local D1 and Durable Objects; `--gateway wrangler`: under `wrangler dev`) and
 * two real runner processes (`twinserve serve`)
 * on the bundled demo package (zoo/fashion/package), under closed-loop load. Scenarios: tenant A's hostile
 * requests while tenant B is served, SIGKILL, SIGSTOP/SIGCONT, SIGTERM drain, slow and huge bodies, overload,
 * gateway restart, all runners gone. Prints one row per scenario (requests, failed, what was measured, the goal)
 * as a Markdown table with the machine, and exits 1 if a goal was missed.
 *
 *   node --import tsx bench/chaos/main.ts [--only kill,hang] [--gateway workerd|wrangler] [--trace]
 *     (npm run chaos -- …)
 *
 * Under `wrangler dev` a proxy Worker in a second workerd sits in front of the gateway, and that hop loses a POST
 * now and then with its own 503 "Your worker restarted mid-request" although nothing restarted (a keep-alive
 * race between the two workerds after ~5 s idle: bench/chaos/proxy-race.ts, bench/RESULTS.md's chaos section).
 * Deployed, no such hop exists, hence the bare workerd by default (since 2026-12-05, once its hang scenario held
 * too, issue #16).
 * @module
 */
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../../gateway/dev/local-gateway.ts'
import { type GatewayStarter, startE2eGateway } from '../../test/support/gateway-harness.ts'
import { startBareGateway } from '../bare-gateway.ts'
import {
  allGone,
  baseline,
  drain,
  type Fleet,
  gatewayRestart,
  hang,
  hostile,
  kill,
  overload,
  type Row,
  slowAndHuge,
  startRunner,
} from './scenarios.ts'

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    gateway: { type: 'string', default: 'workerd' },
    trace: { type: 'boolean', default: false },
  },
})
const only = args.only ? new Set(args.only.split(',')) : undefined
if (args.gateway !== 'workerd' && args.gateway !== 'wrangler')
  throw new Error(`--gateway: workerd or wrangler, not ${args.gateway}`)

const VARS = {
  // Load must not be shed by the default key bucket (overload uses a key of its own with a low limit).
  RATE_LIMIT_RPS: '100000',
  RATE_LIMIT_BURST: '100000',
  HEARTBEAT_INTERVAL_MS: '5000',
  COLD_START_WAIT_MS: '5000',
  BODY_TIMEOUT_MS: '5000',
  MAX_BODY_BYTES: String(16 * 2 ** 20),
  // Each answer says how it was routed: the hang scenario's goal counts the requests the frozen runner held, and
  // `--trace` prints the route of every slow one.
  ROUTE_TRACE: '1',
}

/** The same state directory, port, vars and log lines as wrangler dev gets, served by a bare workerd. */
const bareWorkerd: GatewayStarter = async (o) => {
  const g = await startBareGateway({
    root: REPO_ROOT,
    persist: o.persistTo,
    vars: o.vars,
    ...(o.port ? { port: o.port } : {}),
    // All load comes from one address: wrangler.toml's per-IP pre-authentication limit (2000 per 10 s) would
    // shed it once the gateway answers faster than under wrangler dev (as RATE_LIMIT_* above, for the key).
    preauthLimit: 1_000_000,
    ...(o.onOutput ? { onOutput: o.onOutput } : {}),
  })
  return { url: g.url, port: Number(new URL(g.url).port), stop: () => g.stop() }
}

const started = Date.now()
const gw = await startE2eGateway(VARS, args.gateway === 'wrangler' ? undefined : bareWorkerd)
const f: Fleet = {
  gw,
  key: await gw.createKey(['fashion-twin'], 'chaos-b'),
  model: 'fashion-twin',
  pkg: join(REPO_ROOT, 'zoo', 'fashion', 'package'),
  runners: new Map(),
  p99: Number.NaN,
  baselineOver2p99: { over: 0, of: 0 },
  heartbeatMs: Number(VARS.HEARTBEAT_INTERVAL_MS),
  coldStartWaitMs: Number(VARS.COLD_START_WAIT_MS),
  bodyTimeoutMs: Number(VARS.BODY_TIMEOUT_MS),
}
const rows: Row[] = []
let cases: string[] = []
const scenarios: [string, () => Promise<void>][] = [
  ['baseline', async () => void rows.push(await baseline(f))],
  [
    'hostile',
    async () => {
      const r = await hostile(f)
      rows.push(r.row)
      cases = r.cases
    },
  ],
  ['kill', async () => void rows.push(await kill(f))],
  ['hang', async () => void rows.push(await hang(f, undefined, args.trace))],
  ['drain', async () => void rows.push(await drain(f))],
  ['slow', async () => void rows.push(await slowAndHuge(f, Number(VARS.MAX_BODY_BYTES)))],
  ['overload', async () => void rows.push(await overload(f))],
  ['restart', async () => void rows.push(await gatewayRestart(f))],
  ['gone', async () => void rows.push(await allGone(f))],
]
try {
  await Promise.all([startRunner(f, 'a'), startRunner(f, 'b')])
  for (const [name, run] of scenarios) {
    if (only && name !== 'baseline' && !only.has(name)) continue
    process.stderr.write(`chaos: ${name}…\n`)
    await run()
  }
} finally {
  await Promise.all([...f.runners.values()].map((r) => r.stop('SIGKILL')))
  await gw.stop()
}

const cpu = cpus()[0]?.model ?? 'unknown CPU'
console.log(
  `Gateway: ${args.gateway === 'wrangler' ? 'wrangler dev (proxy Worker in front)' : 'bare workerd (bench/bare-gateway.ts)'}. Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, load average ${loadavg()[0]?.toFixed(2)} at the end; run took ${((Date.now() - started) / 1000).toFixed(0)} s.\n`,
)
console.log('| scenario | requests | failed | measured | goal | met |')
console.log('|---|---:|---:|---|---|---|')
for (const r of rows)
  console.log(
    `| ${r.scenario} | ${r.requests} | ${r.failed} | ${r.measured} | ${r.goal} | ${r.pass ? 'yes' : 'NO'} |`,
  )
if (cases.length)
  console.log(`\nHostile cases (tenant A):\n${cases.map((c) => `    ${c}`).join('\n')}`)
const missed = rows.filter((r) => !r.pass)
if (missed.length) {
  console.log(`\nMissed: ${missed.map((r) => r.scenario).join('; ')}`)
  process.exitCode = 1
}
