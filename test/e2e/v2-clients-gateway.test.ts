/**
 * The V2 clients' real byte streams through the real gateway (issue #15): workerd under `wrangler dev` with D1
 * and Durable Objects, in front of a real runner process. Every REST scenario captured from tritonclient (http,
 * aio) and KServe's SDK is replayed byte for byte with only an API key added, and must be answered as that client
 * reads it: 200, the same form (binary or JSON), never compressed (the aio client advertises gzip on every call
 * but cannot read gzip metadata), and the right numbers: equal to the gateway's own answer to the same tensors as
 * plain JSON, in the same run. Text-model scenarios that name inputs and outputs the text package does not have
 * (`input_ids` alone, a `label` output: the fixtures guessed them before the package existed) are skipped by name.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  InferenceStatisticsSchema,
  ModelConfigSchema,
  ModelMetadataSchema,
  RepositoryIndexSchema,
  ServerMetadataSchema,
} from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../fixtures/twin-fixture.ts'
import { type E2eGateway, startE2eGateway, startGatewayRunner } from '../support/gateway-harness.ts'
import type { RunnerProcess } from '../support/runner-harness.ts'
import {
  fitsTextPackage,
  loadScenarios,
  plainJsonRequest,
  readInferAnswer,
  replay,
  targetModel,
} from '../support/v2-client-replay.ts'

const FASHION = new URL('../../zoo/fashion/package', import.meta.url).pathname
const TEXT = new URL('../../zoo/text/package', import.meta.url).pathname
const root = await mkdtemp(join(tmpdir(), 'twinserve-e2e-v2-clients-'))
let gw: E2eGateway
let runner: RunnerProcess
let key: string
const versions = new Map<string, string>()

beforeAll(async () => {
  gw = await startE2eGateway()
  key = await gw.createKey()
  await writeTwinFixture(join(root, 'tiny'))
  runner = await startGatewayRunner(gw, {
    packages: [FASHION, TEXT, join(root, 'tiny')],
    runnerId: 'v2',
  })
  for (const name of ['fashion-twin', 'tiny-twin']) {
    const res = await fetch(`${gw.url}/v2/models/${name}`, {
      headers: { authorization: `Bearer ${key}` },
    })
    versions.set(name, ModelMetadataSchema.parse(await res.json()).versions?.[0] ?? '')
  }
}, 180_000)
afterAll(async () => {
  await runner?.stop()
  await gw?.stop()
  await rm(root, { recursive: true, force: true })
})

const atVersion = (target: string) =>
  target.replace(
    /^\/v2\/models\/([^/]+)\/versions\/1(?=\/|$)/,
    (_, m: string) => `/v2/models/${m}/versions/${versions.get(m)}`,
  )
const SERVED = new Set(['fashion-twin', 'tiny-twin', 'stats'])
const scenarios = loadScenarios(['triton-http', 'triton-aio', 'kserve-rest'])

describe.each(['triton-http', 'triton-aio', 'kserve-rest'])(
  '%s byte streams → gateway',
  (client) => {
    for (const s of scenarios.filter((x) => x.client === client)) {
      const model = targetModel(s.scenario.request.target)
      const infer = s.scenario.request.target.endsWith('/infer')
      it.skipIf(
        model === 'text-twin' ? !fitsTextPackage(s) : model !== undefined && !SERVED.has(model),
      )(`${s.name}`, async () => {
        const res = await replay(gw.url, s, {
          target: atVersion,
          extraHeaders: [['Authorization', `Bearer ${key}`]],
        })
        expect(res.status, res.body.toString('utf8').slice(0, 300)).toBe(s.scenario.response.status)
        // Nothing compressed, whatever Accept-Encoding the client advertised.
        expect(res.headers['content-encoding'] ?? 'identity').toBe('identity')
        if (!infer) {
          if (res.body.byteLength === 0) return
          const json = JSON.parse(res.body.toString('utf8'))
          if (s.name.includes('config')) ModelConfigSchema.parse(json)
          else if (s.name.includes('stats'))
            expect(InferenceStatisticsSchema.parse(json).model_stats.length).toBeGreaterThan(0)
          else if (s.name.startsWith('repository-index'))
            expect(RepositoryIndexSchema.parse(json).map((m) => [m.name, m.state])).toEqual(
              expect.arrayContaining([
                ['fashion-twin', 'READY'],
                ['tiny-twin', 'READY'],
              ]),
            )
          else if (s.name === 'server-metadata')
            expect(ServerMetadataSchema.parse(json).extensions).toContain('binary_tensor_data')
          else if (s.name.startsWith('model-metadata'))
            expect(ModelMetadataSchema.parse(json).versions).toEqual([versions.get(model ?? '')])
          return
        }
        const recorded = new Map(s.scenario.response.headers.map(([n, v]) => [n.toLowerCase(), v]))
        expect(res.headers['inference-header-content-length'] !== undefined).toBe(
          recorded.has('inference-header-content-length'),
        )
        const { json, outputs } = readInferAnswer(res)
        expect(json.model_name).toBe(model)
        const ref = await gw.infer(key, model ?? '', plainJsonRequest(s))
        expect(ref.status).toBe(200)
        const reference = ref.json.outputs as { name: string; data: number[] }[]
        for (const out of outputs.values()) {
          const refData = reference.find((o) => o.name === out.name)?.data ?? []
          if (out.datatype === 'BYTES') {
            const top = refData
              .map((v, i) => [v, i] as const)
              .sort((a, b) => b[0] - a[0] || a[1] - b[1])
              .slice(0, out.shape.at(-1) ?? 0)
              .map(([v, i]) => `${v.toFixed(6)}:${i}`)
            expect(out.values).toEqual(top)
          } else {
            expect(out.values.length).toBe(refData.length)
            out.values.forEach((v, i) => {
              expect(Number(v)).toBeCloseTo(refData[i] as number, 6)
            })
          }
        }
      })
    }
  },
)
