import {
  GatewayMetricsSchema,
  InferenceRequestSchema,
  ServerMetadataSchema,
} from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { app } from '../src/app.ts'
import { toPrometheusText } from '../src/metrics/prometheus-text.ts'
import {
  bearer,
  createKey,
  deregister,
  gw,
  infer,
  migrate,
  register,
  registration,
  standIns,
} from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

beforeAll(migrate)

describe('server endpoints', () => {
  it('GET /v2 describes the gateway; the request id is echoed only when safe', async () => {
    const res = await gw('/v2', { headers: { 'x-request-id': 'abc-123' } })
    expect(ServerMetadataSchema.parse(await res.json()).name).toBe('twinserve-gateway')
    expect(res.headers.get('x-request-id')).toBe('abc-123')
    const unsafe = await gw('/v2', { headers: { 'x-request-id': 'bad id\twith spaces' } })
    expect(unsafe.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })
})

describe('metrics', () => {
  it('counts per model and per runner, in Prometheus text and JSON', async () => {
    const key = (await createKey({ tenant: 'ops', scopes: ['infer'], models: ['*'] })).key
    const s = await standIns.start('ops-runner', ['m-ops'])
    await register(registration('ops-runner', s.url, [{ name: 'm-ops' }]))
    for (let i = 0; i < 3; i++) expect((await infer('m-ops', key)).status).toBe(200)

    let text = ''
    for (let i = 0; i < 50; i++) {
      const res = await gw('/metrics', { headers: bearer(TEST_ADMIN_SECRET) })
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
      text = await res.text()
      if (
        text.includes(
          'twinserve_gateway_requests_total{route="infer",model="m-ops",status="200"} 3',
        )
      )
        break
      await new Promise((r) => setTimeout(r, 20))
    }
    expect(text).toContain(
      'twinserve_gateway_requests_total{route="infer",model="m-ops",status="200"} 3',
    )
    expect(text).toContain(
      'twinserve_gateway_runner_requests_total{runner="ops-runner",model="m-ops",outcome="ok"} 3',
    )
    expect(text).toContain(
      'twinserve_gateway_runner_latency_ms_count{runner="ops-runner",model="m-ops"} 3',
    )
    expect(text).toContain(
      'twinserve_gateway_request_duration_ms_bucket{route="infer",model="m-ops",le="+Inf"} 3',
    )
    expect(text).toContain('twinserve_gateway_runners{state="ready"} 1')
    expect(text).toContain('twinserve_gateway_runner_breaker_open{runner="ops-runner"} 0')
    expect(text).toContain('# TYPE twinserve_gateway_request_duration_ms histogram')

    const json = GatewayMetricsSchema.parse(
      await (
        await gw('/metrics', {
          headers: { ...bearer(TEST_ADMIN_SECRET), accept: 'application/json' },
        })
      ).json(),
    )
    const family = json.families.find((f) => f.name === 'twinserve_gateway_runner_requests_total')
    expect(family?.samples).toContainEqual({
      name: 'twinserve_gateway_runner_requests_total',
      labels: { runner: 'ops-runner', model: 'm-ops', outcome: 'ok' },
      value: 3,
    })
    // Histogram buckets are cumulative and end at the count.
    const buckets = json.families
      .find((f) => f.name === 'twinserve_gateway_request_duration_ms')
      ?.samples.filter((x) => x.name.endsWith('_bucket') && x.labels.model === 'm-ops')
      .map((x) => x.value)
    expect(buckets?.length).toBeGreaterThan(2)
    expect(buckets).toEqual([...(buckets ?? [])].sort((a, b) => a - b))
    expect(buckets?.at(-1)).toBe(3)

    await deregister('ops-runner')
    await standIns.kill('ops-runner')
  })

  it('renders label values escaped', () => {
    const text = toPrometheusText([
      {
        name: 'x_total',
        help: 'a\nb',
        type: 'counter',
        samples: [{ name: 'x_total', labels: { l: 'q"u\\o\nte' }, value: 2 }],
      },
    ])
    expect(text).toBe(
      '# HELP x_total a\\nb\n# TYPE x_total counter\nx_total{l="q\\"u\\\\o\\nte"} 2\n',
    )
  })
})

describe('OpenAPI document', () => {
  it('is generated from the zod schemas and documents every route the app serves', async () => {
    const res = await gw('/openapi.json')
    expect(res.status).toBe(200)
    const doc = (await res.json()) as {
      openapi: string
      paths: Record<string, Record<string, unknown>>
      components: {
        schemas: Record<string, { required?: string[]; properties?: Record<string, unknown> }>
      }
    }
    expect(doc.openapi).toBe('3.1.0')
    const served = app.routes
      .filter((r) => r.method !== 'ALL')
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`)
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => `${m} ${path}`),
    )
    expect(new Set(documented)).toEqual(new Set(served))

    const req = doc.components.schemas.InferenceRequest
    expect(req?.required).toEqual(['inputs'])
    expect(Object.keys(req?.properties ?? {})).toEqual(Object.keys(InferenceRequestSchema.shape))
    expect(doc.components.schemas.MergeControls?.properties).toHaveProperty('top_k')
    expect(doc.components.schemas.CreateApiKeyRequest?.required).toEqual(['tenant', 'scopes'])
    // Every $ref points at a component that exists.
    const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? []
    expect(refs.length).toBeGreaterThan(10)
    for (const r of refs) {
      const name = r.replace(/^"\$ref":"#\/components\/schemas\//, '').replace(/"$/, '')
      expect(doc.components.schemas, r).toHaveProperty(name)
    }
  })
})
