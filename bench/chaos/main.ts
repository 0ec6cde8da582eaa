/**
 * `npm run chaos`: issue #16's faults as a deployment sees them, repeatable and bounded (a few minutes), on
 * loopback only, with real processes: the gateway under `wrangler dev` (workerd, local D1 and Durable Objects) and
 * two real runner processes (`twinserve serve`) on the bundled demo package (zoo/fashion/package), under
 * closed-loop load. Scenarios: tenant A's hostile requests while tenant B is served, SIGKILL, SIGSTOP/SIGCONT,
 * SIGTERM drain, slow and huge bodies, overload, gateway restart, all runners gone. Prints one row per scenario
 * (requests, failed, what was measured, the goal) as a Markdown table with the machine, and exits 1 if a goal
 * was missed.
 *
 *   node --import tsx bench/chaos/main.ts [--only kill,hang]   (npm run chaos -- …)
 * @module
 */
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../../gateway/dev/local-gateway.ts'
import { startE2eGateway } from '../../test/support/gateway-harness.ts'
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

const { values: args } = parseArgs({ options: { only: { type: 'string' } } })
const only = args.only ? new Set(args.only.split(',')) : undefined

const VARS = {
  // Load must not be shed by the default key bucket (overload uses a key of its own with a low limit).
  RATE_LIMIT_RPS: '100000',
  RATE_LIMIT_BURST: '100000',
  HEARTBEAT_INTERVAL_MS: '5000',
  COLD_START_WAIT_MS: '5000',
  BODY_TIMEOUT_MS: '5000',
  MAX_BODY_BYTES: String(16 * 2 ** 20),
}

const started = Date.now()
const gw = await startE2eGateway(VARS)
const f: Fleet = {
  gw,
  key: await gw.createKey(['fashion-twin'], 'chaos-b'),
  model: 'fashion-twin',
  pkg: join(REPO_ROOT, 'zoo', 'fashion', 'package'),
  runners: new Map(),
  p99: Number.NaN,
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
  ['hang', async () => void rows.push(await hang(f))],
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
  `Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, load average ${loadavg()[0]?.toFixed(2)} at the end; run took ${((Date.now() - started) / 1000).toFixed(0)} s.\n`,
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
