/**
 * Fan-out (`parameters: {fan_out: true}`, issue #19): one request runs its input through every expert alone and
 * through the shared model in one batched run, on a real runner over a generated package. Each labelled output
 * must equal what the explicit one-hot mix (or variant `shared`) request answers, and the fixture's independent
 * JS reference.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { InferenceResponseSchema, signRequest } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type TwinFixture, writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { RunnerConfigSchema } from '../config.ts'
import { createLogger } from '../server/logger.ts'
import { type Runner, startRunner } from '../server/runner.ts'

const SECRET = 'test-secret-0123456789abcdef'
const root = await mkdtemp(join(tmpdir(), 'twinserve-fan-out-'))
let fx: TwinFixture
let runner: Runner

beforeAll(async () => {
  fx = await writeTwinFixture(join(root, 'pkg'))
  runner = await startRunner(
    RunnerConfigSchema.parse({
      packages: [join(root, 'pkg')],
      port: 0,
      signingSecret: SECRET,
      provider: 'cpu',
      threads: 1,
    }),
    { logger: createLogger({ sink: () => undefined }) },
  )
})
afterAll(async () => {
  await runner?.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

async function post(body: unknown) {
  const path = '/v2/models/tiny-twin/infer'
  const text = JSON.stringify(body)
  const headers = {
    'content-type': 'application/json',
    ...(await signRequest(SECRET, { method: 'POST', path, body: text })),
  }
  const res = await fetch(`${runner.url}${path}`, { method: 'POST', headers, body: text })
  return { status: res.status, json: (await res.json()) as Record<string, unknown> }
}

const rows = [
  [0.5, -1, 2, 0.25, 1.5, -0.75],
  [-1.2, 0.3, 0.8, -2, 0.1, 1.1],
]
const request = (parameters: Record<string, unknown>, outputs?: string[]) => ({
  inputs: [{ name: 'x', shape: [rows.length, 6], datatype: 'FP32', data: rows.flat() }],
  parameters,
  ...(outputs ? { outputs: outputs.map((name) => ({ name })) } : {}),
})

describe('fan_out', () => {
  it('answers each output once per expert and for the shared model, each equal to its own request', async () => {
    const fan = await post(request({ fan_out: true }, ['y', 'expert_weights']))
    expect(fan.status, JSON.stringify(fan.json)).toBe(200)
    const answer = InferenceResponseSchema.parse(fan.json)
    const labels = [...fx.experts, 'shared']
    expect(answer.outputs.map((o) => o.name)).toEqual([
      ...labels.map((l) => `y/${l}`),
      ...labels.map((l) => `expert_weights/${l}`),
    ])
    for (const [k, label] of labels.entries()) {
      const y = answer.outputs.find((o) => o.name === `y/${label}`)
      expect(y?.shape).toEqual([rows.length, 3])
      expect(y?.parameters).toEqual(
        label === 'shared' ? { output: 'y', variant: 'shared' } : { output: 'y', expert: label },
      )
      const oneHot = fx.experts.map((_, j) => (j === k ? 1 : 0))
      // The same request, asked the usual way: an explicit one-hot mix, or the shared variant.
      const alone = await post(
        request(label === 'shared' ? { variant: 'shared' } : { experts: { [label]: 1 } }, ['y']),
      )
      expect(alone.status).toBe(200)
      const expected = InferenceResponseSchema.parse(alone.json).outputs[0]?.data ?? []
      expect(y?.data?.length).toBe(expected.length)
      y?.data?.forEach((v, i) => {
        expect(v as number).toBeCloseTo(expected[i] as number, 5)
      })
      // … and the fixture's independent reference.
      rows.forEach((x, r) => {
        const ref = fx.reference(x, oneHot).y
        ref.forEach((v, i) => {
          expect(y?.data?.[r * 3 + i] as number).toBeCloseTo(v, 4)
        })
      })
      const w = answer.outputs.find((o) => o.name === `expert_weights/${label}`)
      expect(w?.data).toEqual([...oneHot, ...oneHot])
    }
    expect(answer.model_version).toBe(runner.models.get('tiny-twin')?.version)
  })

  it('refuses fan_out with other merge controls, classification, or a non-boolean', async () => {
    const mixed = await post(request({ fan_out: true, top_k: 1 }))
    expect(mixed.status).toBe(400)
    expect(String(mixed.json.error)).toMatch(/top_k.*cannot be combined with fan_out/)
    const classified = await post({
      ...request({ fan_out: true }),
      outputs: [{ name: 'y', parameters: { classification: 1 } }],
    })
    expect(classified.status).toBe(400)
    expect(String(classified.json.error)).toMatch(/classification cannot be combined with fan_out/)
    const wrong = await post(request({ fan_out: 'yes' }))
    expect(wrong.status).toBe(400)
    expect(String(wrong.json.error)).toMatch(/fan_out.*true or false/)
  })
})
