/**
 * Issue #17: the runner answers health checks while a long batch runs. A real runner (startRunner) serves a fixture
 * package wide enough that one large request takes a noticeable time on one intra-op thread. While that request is
 * outstanding the test keeps calling /v2/health/ready, each call between two reads of /metrics: a health answer
 * that arrived while the runner reported the batch executing both before it was sent and after it came back was
 * answered during the run (one request, one batch). At least one must be, and every health check must come back
 * within half of the request's time. With sessions on the event loop (`sessionThreads: 'off'`, as before #17) the
 * health check sent while the run executes is read only once the run is over: none is answered inside it, and the
 * round trip is most of the request's. (Client and runner share this process's event loop, so the order in which
 * answers are seen is no measure; the runner's own gauge and the durations are.)
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { getPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { RunnerConfigSchema } from '../config.ts'
import { createLogger } from './logger.ts'
import { type Runner, startRunner } from './runner.ts'

/** 2·ROWS·D_IN·HIDDEN ≈ 4.3 GFLOP in the first layer alone: hundreds of ms on one thread of a fast core. */
const [D_IN, HIDDEN, ROWS] = [128, 8192, 2048] as const

const root = await mkdtemp(join(tmpdir(), 'twinserve-health-'))
let runner: Runner
const logLines: Record<string, unknown>[] = []

beforeAll(async () => {
  await writeTwinFixture(join(root, 'pkg'), { dIn: D_IN, hidden: HIDDEN, dOut: 4, rank: 2 })
  const config = RunnerConfigSchema.parse({
    packages: [join(root, 'pkg')],
    port: 0,
    insecureLocal: true,
    provider: 'cpu',
    threads: 1,
    maxBatchSize: ROWS,
  })
  runner = await startRunner(config, {
    logger: createLogger({ level: 'info', sink: (line) => logLines.push(JSON.parse(line)) }),
  })
})
afterAll(async () => {
  await runner?.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

/** The runner's twinserve_runner_in_flight gauge (requests inside executing batches). */
async function inFlight(): Promise<number> {
  const text = await (await fetch(`${runner.url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith('twinserve_runner_in_flight'))
  return Number(line?.split(' ').at(-1) ?? Number.NaN)
}

it('answers /v2/health/ready while a long batch executes (#17)', async () => {
  const model = [...runner.models.keys()][0] ?? ''
  const x = Array.from({ length: ROWS * D_IN }, (_, i) => Math.sin(i))
  const body = JSON.stringify({
    inputs: [{ name: 'x', datatype: 'FP32', shape: [ROWS, D_IN], data: x }],
    parameters: { experts: { [runner.models.get(model)?.experts[0] ?? '']: 1 } },
  })
  const started = performance.now()
  let inferDone = false
  const infer = fetch(`${runner.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  }).then(async (res) => {
    const text = await res.text()
    inferDone = true
    return { status: res.status, body: text, ms: performance.now() - started }
  })

  const healthMs: number[] = []
  let sawRunning = false
  /** Health checks sent and answered while the batch executed (the gauge > 0 just before and just after). */
  let answeredDuringRun = 0
  while (!inferDone) {
    const runningBefore = (await inFlight()) > 0
    const sent = performance.now()
    const health = await fetch(`${runner.url}/v2/health/ready`)
    healthMs.push(performance.now() - sent)
    expect(health.status).toBe(200)
    const runningAfter = (await inFlight()) > 0
    sawRunning ||= runningBefore || runningAfter
    if (runningBefore && runningAfter) answeredDuringRun++
  }
  const result = await infer
  expect(result.status, result.body).toBe(200)
  const slowest = Math.max(...healthMs)
  expect(
    slowest,
    `slowest of ${healthMs.length} health checks: ${slowest.toFixed(1)} ms; the request took ${result.ms.toFixed(1)} ms`,
  ).toBeLessThan(result.ms / 2)
  expect(sawRunning, 'the runner never reported the batch as executing').toBe(true)
  expect(
    answeredDuringRun,
    `${healthMs.length} health checks, none inside the run`,
  ).toBeGreaterThan(0)
})

it.runIf(process.platform === 'linux')(
  'says in its start log how far below the event loop the session threads run (--session-nice, #17)',
  () => {
    const listening = logLines.find((l) => l.msg === 'listening')
    // Default 10 steps, up to nice 19 (the end of the range) from this process's own nice.
    expect(listening?.session_nice).toBe(Math.min(10, 19 - getPriority()))
  },
)
