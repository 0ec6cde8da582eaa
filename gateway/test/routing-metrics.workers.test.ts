/**
 * Per-expert routing counters at the gateway (issue #19): a routed answer's summary becomes counters labelled
 * only with a model the caller was authenticated for and a runner registered, and experts a runner registered for
 * it; a malformed summary, an error answer or an unknown model counts nothing. A runner's routing drift from its
 * heartbeat is a gauge per model and runner. The path from a real runner's
 * header through /metrics to the dashboard is test/e2e/dashboard.test.ts.
 */
import { GatewayMetricsSchema } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { RequestLog } from '../src/http/request-log-entry.ts'
import { metrics } from '../src/metrics/metrics-flush.ts'
import { countRequest } from '../src/metrics/request-metrics.ts'
import { bearer, deregister, gw, migrate, register, registration } from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

beforeAll(migrate)

const knows = (m: string) => m === 'm-route'
const knowsExpert = (m: string, e: string) => m === 'm-route' && (e === 'a' || e === 'b')

function request(model: string, routing: string, authorized = true): RequestLog {
  const rl = new RequestLog()
  rl.route = 'infer'
  rl.model = model
  rl.modelAuthorized = authorized
  rl.routing = routing
  return rl
}

/** The routing counters drained from the isolate's buffer, as `name{labels}` → value. */
function routingCounters(): Record<string, number> {
  const out: Record<string, number> = {}
  for (const c of metrics.drain().counters)
    if (/routed|router/.test(c.name))
      out[`${c.name}${c.key}`] = (out[`${c.name}${c.key}`] ?? 0) + c.by
  return out
}

describe('per-expert routing counters', () => {
  it('counts known experts of a known, authorized model; drops unknown expert names', () => {
    metrics.drain()
    countRequest(
      request('m-route', '3,1,0.5000;a:2:1.5000;b:0:0.2000;made-up:1:0.3000'),
      200,
      5,
      knows,
      knowsExpert,
    )
    countRequest(request('m-route', '1,0,0.1000;a:1:0.9000;b:0:0.1000'), 200, 5, knows, knowsExpert)
    expect(routingCounters()).toEqual({
      'twinserve_gateway_routed_rows_total["m-route"]': 4,
      'twinserve_gateway_router_abstentions_total["m-route"]': 1,
      'twinserve_gateway_router_entropy_sum["m-route"]': expect.closeTo(0.6, 9),
      'twinserve_gateway_expert_routed_rows_total["m-route","a"]': 3,
      'twinserve_gateway_expert_routed_rows_total["m-route","b"]': 0,
      'twinserve_gateway_expert_routed_weight_sum["m-route","a"]': expect.closeTo(2.4, 9),
      'twinserve_gateway_expert_routed_weight_sum["m-route","b"]': expect.closeTo(0.3, 9),
    })
  })

  it('counts nothing for a malformed summary, an error answer, an unauthorized or unknown model', () => {
    metrics.drain()
    countRequest(request('m-route', '3,1;a:2:1'), 200, 5, knows, knowsExpert)
    countRequest(request('m-route', '1,0,0;a:1:1'), 500, 5, knows, knowsExpert)
    countRequest(request('m-route', '1,0,0;a:1:1', false), 200, 5, knows, knowsExpert)
    countRequest(request('m-unknown', '1,0,0;a:1:1'), 200, 5, knows, knowsExpert)
    expect(routingCounters()).toEqual({})
  })
})

describe('routing drift from heartbeats', () => {
  it('is a gauge per model and runner while the runner is registered, absent when it sends none', async () => {
    const reg = registration('drift-runner', 'http://127.0.0.1:9', [
      { name: 'm-drift' },
      { name: 'm-plain' },
    ])
    const [drifting] = reg.models
    if (!drifting) throw new Error('no model')
    drifting.routing_drift = 0.37
    await register(reg)
    const metricsNow = async () =>
      GatewayMetricsSchema.parse(
        await (
          await gw('/metrics', {
            headers: { ...bearer(TEST_ADMIN_SECRET), accept: 'application/json' },
          })
        ).json(),
      ).families.find((f) => f.name === 'twinserve_gateway_routing_drift')?.samples ?? []
    expect(await metricsNow()).toEqual([
      {
        name: 'twinserve_gateway_routing_drift',
        labels: { model: 'm-drift', runner: 'drift-runner' },
        value: 0.37,
      },
    ])
    await deregister('drift-runner')
    expect(await metricsNow()).toEqual([])
  })
})
