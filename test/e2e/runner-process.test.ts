/**
 * A real runner process on loopback (the `twinserve serve` binary) over a generated twin package: the protocol,
 * signatures, and dynamic batching of concurrent mixed-weight requests checked against one-by-one runs and the
 * fixture's independent JS reference.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InferenceResponseSchema } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TwinFixture, writeTwinFixture } from '../fixtures/twin-fixture.ts'
import { type RunnerProcess, signedFetch, startRunnerProcess } from '../support/runner-harness.ts'

const SECRET = 'e2e-secret-abcdefghijklmnop'
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-proc-'))
let fx: TwinFixture
let runner: RunnerProcess

beforeAll(async () => {
  fx = await writeTwinFixture(join(root, 'pkg'))
  // A 40 ms batch window makes the concurrent burst below coalesce deterministically enough to observe.
  runner = await startRunnerProcess({
    packages: [join(root, 'pkg')],
    secret: SECRET,
    args: ['--max-batch-wait-ms', '40', '--max-batch-size', '64'],
  })
})
afterAll(async () => {
  const code = await runner?.stop()
  expect(code).toBe(0)
  await rm(root, { recursive: true, force: true })
})

const INFER = '/v2/models/tiny-twin/infer'

function example(i: number): number[] {
  return Array.from({ length: 6 }, (_, j) => Math.cos(i * 3.3 + j) * 1.5)
}

async function infer(rows: number[][], parameters?: Record<string, unknown>) {
  const res = await signedFetch(SECRET, runner.url, INFER, {
    body: JSON.stringify({
      inputs: [{ name: 'x', shape: [rows.length, 6], datatype: 'FP32', data: rows }],
      ...(parameters ? { parameters } : {}),
    }),
  })
  expect(res.status).toBe(200)
  return InferenceResponseSchema.parse(await res.json())
}

describe('runner process', () => {
  it('answers the protocol: health unsigned, everything else signed', async () => {
    expect((await fetch(`${runner.url}/v2/health/live`)).status).toBe(200)
    expect(await (await fetch(`${runner.url}/v2/health/ready`)).json()).toEqual({ ready: true })
    const unsigned = await fetch(`${runner.url}/v2`)
    expect(unsigned.status).toBe(401)
    expect(await unsigned.json()).toMatchObject({ code: 'UNAUTHENTICATED' })
    const meta = await signedFetch(SECRET, runner.url, '/v2')
    expect(await meta.json()).toMatchObject({ name: 'twinserve-gpu-runner', provider: 'cpu' })
    const bad = await signedFetch(SECRET, runner.url, INFER, { body: '{"inputs":[]}' })
    expect(bad.status).toBe(400)
    expect(await bad.json()).toMatchObject({ code: 'INVALID_REQUEST' })
    const lost = await signedFetch(SECRET, runner.url, '/v2/models/lost/infer', { body: '{}' })
    expect(lost.status).toBe(404)
    expect(runner.logs.find((l) => l.msg === 'listening')).toMatchObject({
      provider: 'cpu',
      signed: true,
    })
  })

  it('batches concurrent mixed-weight requests, and each equals the same request run alone', async () => {
    const controls: (Record<string, unknown> | undefined)[] = [
      undefined,
      { top_k: 1 },
      { experts: { alpha: 1 } },
      { exclude_experts: ['beta'] },
      { experts: { beta: 0.4, gamma: 0.6 } },
      { top_k: 2, exclude_experts: ['alpha'] },
    ]
    const requests = Array.from({ length: 18 }, (_, i) => ({
      rows: i % 4 === 0 ? [example(i), example(i + 100)] : [example(i)],
      parameters: controls[i % controls.length],
    }))
    const before = await (await fetch(`${runner.url}/metrics`)).text()
    const together = await Promise.all(requests.map((r) => infer(r.rows, r.parameters)))
    const after = await (await fetch(`${runner.url}/metrics`)).text()
    const sum = (text: string, name: string) =>
      Number(new RegExp(`^${name}\\{model="tiny-twin"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0)
    const runs =
      sum(after, 'twinserve_runner_batch_requests_count') -
      sum(before, 'twinserve_runner_batch_requests_count')
    const coalesced =
      sum(after, 'twinserve_runner_batch_requests_sum') -
      sum(before, 'twinserve_runner_batch_requests_sum')
    expect(coalesced).toBe(requests.length)
    // Fewer runs than requests: requests shared batches.
    expect(runs).toBeLessThan(requests.length)

    for (const [i, r] of requests.entries()) {
      const alone = await infer(r.rows, r.parameters)
      const t = together[i]
      expect(t?.outputs.map((o) => o.shape)).toEqual(alone.outputs.map((o) => o.shape))
      const ty = t?.outputs.find((o) => o.name === 'y')?.data as number[]
      const ay = alone.outputs.find((o) => o.name === 'y')?.data as number[]
      ty.forEach((v, k) => {
        expect(Math.abs(v - (ay[k] ?? Number.NaN))).toBeLessThan(1e-6)
      })
      // And both equal the independent reference with the weights the graph applied.
      const w = t?.outputs.find((o) => o.name === 'expert_weights')?.data as number[]
      r.rows.forEach((x, row) => {
        const ref = fx.reference(x, w.slice(row * 3, row * 3 + 3))
        ref.y.forEach((v, k) => {
          expect(Math.abs((ty[row * 3 + k] ?? Number.NaN) - v)).toBeLessThan(1e-5)
        })
      })
    }
  })
})
