/**
 * Why the chaos run lost a request now and then under `wrangler dev` (issue #16): bursts of concurrent POSTs to
 * the gateway, each burst after an idle gap, counting the answers that are wrangler's own 503 "Your worker
 * restarted mid-request" and the reloads wrangler logged meanwhile. The gateway answers these POSTs itself
 * (401: no key), so no runner is involved; a burst opens several connections, and the next one reuses them
 * after the gap.
 *
 *   node --import tsx bench/chaos/proxy-race.ts [--gateway wrangler|workerd] [--bursts 30] [--size 8]
 *     [--gap-ms 4900-5100]
 *
 * `wrangler dev` serves the Worker behind a proxy Worker in a second workerd; that proxy answers a POST whose
 * forwarded fetch failed with this 503 whether or not the Worker restarted (wrangler 4.86's ProxyWorker compares
 * the request's whole URL with the Worker's origin, so for any path but `/` it takes every failure for a restart).
 * `--gateway workerd` runs the same bursts against the gateway in a bare workerd (bench/bare-gateway.ts), as
 * the chaos run now serves it.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT, startLocalGateway } from '../../gateway/dev/local-gateway.ts'
import { migratedState } from '../../test/support/migrated-d1.ts'
import { startBareGateway } from '../bare-gateway.ts'
import { sleep } from './load.ts'

const { values } = parseArgs({
  options: {
    gateway: { type: 'string', default: 'wrangler' },
    bursts: { type: 'string', default: '30' },
    size: { type: 'string', default: '8' },
    'gap-ms': { type: 'string', default: '4900-5100' },
  },
})
const [lo, hi] = (values['gap-ms'] ?? '').split('-').map(Number)
const bursts = Number(values.bursts)
const size = Number(values.size)
if (values.gateway !== 'wrangler' && values.gateway !== 'workerd')
  throw new Error(`--gateway: wrangler or workerd, not ${values.gateway}`)
if (!Number.isFinite(lo) || !Number.isFinite(hi) || lo === undefined || hi === undefined || hi < lo)
  throw new Error(`--gap-ms: <lo>-<hi> in ms, not ${values['gap-ms']}`)

const dir = await mkdtemp(join(tmpdir(), 'twinserve-proxy-race-'))
await migratedState(dir)
const vars = { RUNNER_SIGNING_SECRET: 'r'.repeat(48), ADMIN_BOOTSTRAP_SECRET: 'a'.repeat(48) }
let reloads = 0
const gw =
  values.gateway === 'wrangler'
    ? await startLocalGateway({
        persistTo: dir,
        vars,
        // 'log' lets wrangler's own "⎔ Reloading local server..." through.
        wranglerLogLevel: 'log',
        onOutput: (s) => {
          reloads += s.split('Reloading local server').length - 1
        },
      })
    : await startBareGateway({ root: REPO_ROOT, persist: dir, vars })

const started = Date.now()
const body = JSON.stringify({
  inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 4], data: [0, 0.5, 1, 0] }],
})
const statuses = new Map<string, number>()
let restartAnswers = 0
const post = async () => {
  let key: string
  try {
    const res = await fetch(`${gw.url}/v2/models/fashion-twin/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    })
    const text = await res.text()
    key = String(res.status)
    if (text.includes('restarted mid-request')) restartAnswers += 1
  } catch (err) {
    key = `no answer (${(err as Error).message})`
  }
  statuses.set(key, (statuses.get(key) ?? 0) + 1)
}
try {
  for (let i = 0; i < bursts; i++) {
    await Promise.all(Array.from({ length: size }, post))
    await sleep(lo + Math.random() * (hi - lo))
  }
} finally {
  await gw.stop()
  await rm(dir, { recursive: true, force: true })
}
const sent = bursts * size
console.log(
  `${values.gateway === 'wrangler' ? 'wrangler dev' : 'bare workerd'}: ${bursts} bursts of ${size} POSTs, ${lo}–${hi} ms idle between: ` +
    `${[...statuses].map(([k, n]) => `${n}×${k}`).join(', ')}; "restarted mid-request" ${restartAnswers} of ${sent}; ` +
    `${values.gateway === 'wrangler' ? `wrangler reloads logged: ${reloads}; ` : ''}` +
    `${((Date.now() - started) / 1000).toFixed(0)} s, load average ${loadavg()[0]?.toFixed(2)} at the end`,
)
