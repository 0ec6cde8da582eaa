/**
 * Every route the gateway serves has the protection it is meant to have (issue #20): one guard per route, with
 * the options in INTENDED below, and each guard doing what it says over real HTTP (workerd, real D1 and
 * RateLimiter objects): no key → 401, a key without the scope or the model → 403, a key whose bucket is empty →
 * 429 where the route is rate-limited, a refusal counted under the route's label; runner calls unsigned → 401;
 * public routes open. A route added without an entry here, or with another guard, fails.
 */
import type { ApiKeyScope } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { app } from '../src/app.ts'
import { type GuardOptions, guardOptions } from '../src/guard.ts'
import { bearer, createKey, expectError, gw, migrate } from './helpers.ts'
import { TEST_ADMIN_SECRET } from './test-env.ts'

beforeAll(migrate)

const PUBLIC: GuardOptions = { access: 'public' }
const RUNNER: GuardOptions = { access: 'runner' }
const ADMIN: GuardOptions = { access: 'key', scope: 'admin', countAs: 'admin', rateLimit: true }
const model = (countAs: 'infer' | 'model_metadata' | 'model_ready' | 'generate'): GuardOptions => ({
  access: 'key',
  scope: 'infer',
  modelParam: 'model',
  countAs,
  rateLimit: true,
})

/** The protection each route is meant to have. */
const INTENDED: Record<string, GuardOptions> = {
  'GET /v2/health/live': PUBLIC,
  'GET /v2/health/ready': PUBLIC,
  'GET /v2': PUBLIC,
  'GET /openapi.json': PUBLIC,
  'GET /dashboard': PUBLIC,
  'GET /dashboard/chart.umd.min.js': PUBLIC,
  'GET /dashboard/dashboard.js': PUBLIC,
  'POST /internal/runners/register': RUNNER,
  'POST /internal/runners/heartbeat': RUNNER,
  'POST /internal/runners/deregister': RUNNER,
  'GET /v2/models/:model/ready': model('model_ready'),
  'GET /v2/models/:model': model('model_metadata'),
  'GET /v2/models/:model/config': model('model_metadata'),
  'GET /v2/models/:model/stats': model('model_metadata'),
  'POST /v2/models/:model/infer': model('infer'),
  'POST /v2/models/:model/generate': model('generate'),
  'POST /v2/models/:model/generate_stream': model('generate'),
  'POST /v2/models/:model/versions/:version/generate': model('generate'),
  'POST /v2/models/:model/versions/:version/generate_stream': model('generate'),
  'GET /v1/models': { access: 'key', scope: 'infer', countAs: 'model_metadata', rateLimit: true },
  'POST /v1/completions': { access: 'key', scope: 'infer', countAs: 'generate', rateLimit: true },
  'POST /v1/chat/completions': {
    access: 'key',
    scope: 'infer',
    countAs: 'generate',
    rateLimit: true,
  },
  'GET /v2/models/:model/versions/:version/ready': model('model_ready'),
  'GET /v2/models/:model/versions/:version': model('model_metadata'),
  'GET /v2/models/:model/versions/:version/config': model('model_metadata'),
  'GET /v2/models/:model/versions/:version/stats': model('model_metadata'),
  'POST /v2/models/:model/versions/:version/infer': model('infer'),
  'GET /v2/models/stats': {
    access: 'key',
    scope: 'infer',
    countAs: 'model_metadata',
    rateLimit: true,
  },
  'POST /v2/repository/index': {
    access: 'key',
    scope: 'infer',
    countAs: 'model_metadata',
    rateLimit: true,
  },
  'POST /v1/feedback': {
    access: 'key',
    scope: 'infer',
    countAs: 'feedback',
    rateLimit: true,
  },
  'POST /admin/keys': ADMIN,
  'GET /admin/keys': ADMIN,
  'DELETE /admin/keys/:id': ADMIN,
  'POST /admin/experiments': ADMIN,
  'GET /admin/experiments': ADMIN,
  'GET /admin/experiments/:id': ADMIN,
  'GET /admin/experiments/:id/results': ADMIN,
  'POST /admin/experiments/:id/start': ADMIN,
  'POST /admin/experiments/:id/stop': ADMIN,
  'PUT /admin/experiments/:id/weights': ADMIN,
  'POST /admin/experiments/:id/arms': ADMIN,
  'GET /admin/runners': ADMIN,
  'PUT /admin/models/:model/rollout': ADMIN,
  'GET /admin/models/:model/rollout': ADMIN,
  'POST /admin/models/:model/rollout/promote': ADMIN,
  'POST /admin/models/:model/rollout/rollback': ADMIN,
  'GET /admin/rollouts': ADMIN,
  'GET /metrics': {
    access: 'key',
    scope: 'admin',
    countAs: 'metrics',
    rateLimit: true,
  },
}

/** Each served route (`METHOD /path`) with the guards among its handlers. */
function servedGuards(): Map<string, GuardOptions[]> {
  const served = new Map<string, GuardOptions[]>()
  for (const r of app.routes) {
    if (r.method === 'ALL') continue
    const route = `${r.method} ${r.path}`
    const guards = served.get(route) ?? []
    const options = guardOptions(r.handler)
    if (options) guards.push(options)
    served.set(route, guards)
  }
  return served
}

/** A request for `route` with its parameters filled in; the model name is one the handler refuses (400), so a
 * request that passes the guard ends fast without a runner. */
function call(route: string, headers: Record<string, string> = {}): Promise<Response> {
  const [method = 'GET', path = '/'] = route.split(' ')
  return gw(path.replace(':model', 'Not_A_Model').replace(':version', 'v1').replace(':id', 'x'), {
    method,
    headers,
  })
}

const keyRoutes = Object.entries(INTENDED).flatMap(([route, g]) =>
  g.access === 'key' ? [{ route, guard: g }] : [],
)

describe('route guards', () => {
  it('every served route has exactly one guard, the intended one', () => {
    const served = servedGuards()
    expect([...served.keys()].sort()).toEqual(Object.keys(INTENDED).sort())
    for (const [route, guards] of served) expect(guards, route).toEqual([INTENDED[route]])
  })

  it('public routes need no key; runner calls need a signature (401)', async () => {
    for (const [route, g] of Object.entries(INTENDED)) {
      if (g.access === 'public')
        expect([401, 403, 429], route).not.toContain((await call(route)).status)
      if (g.access === 'runner')
        await expectError(
          await call(route, { 'content-type': 'application/json' }),
          401,
          'UNAUTHENTICATED',
        )
    }
  })

  it.each(keyRoutes)(
    '$route: no key → 401, other scope or model → 403, empty bucket → 429',
    async ({ route, guard }) => {
      if (guard.access !== 'key') return
      await expectError(await call(route), 401, 'UNAUTHENTICATED')
      const other: ApiKeyScope = guard.scope === 'admin' ? 'infer' : 'admin'
      const wrongScope = await createKey({ tenant: 'guard', scopes: [other], models: ['*'] })
      await expectError(await call(route, bearer(wrongScope.key)), 403, 'FORBIDDEN')
      if (guard.modelParam) {
        const elsewhere = await createKey({ tenant: 'guard', scopes: ['infer'], models: ['other'] })
        await expectError(await call(route, bearer(elsewhere.key)), 403, 'FORBIDDEN')
      }
      // One token, refilled once in ~17 minutes: the first call spends it, the second finds the bucket empty.
      const limited = await createKey({
        tenant: 'guard',
        scopes: [guard.scope],
        models: ['*'],
        rate_limit: { requests_per_second: 0.001, burst: 1 },
      })
      const first = await call(route, bearer(limited.key))
      expect([401, 403, 429], `${route}: ${await first.text()}`).not.toContain(first.status)
      const second = await call(route, bearer(limited.key))
      if (guard.rateLimit) await expectError(second, 429, 'RATE_LIMITED')
      else expect(second.status, route).not.toBe(429)
    },
  )

  it('a refused call is counted under its route label', async () => {
    const labels = [
      ...new Set(keyRoutes.map((r) => (r.guard.access === 'key' ? r.guard.countAs : ''))),
    ]
    let text = ''
    for (let i = 0; i < 50; i++) {
      text = await (await gw('/metrics', { headers: bearer(TEST_ADMIN_SECRET) })).text()
      if (labels.every((l) => text.includes(`route="${l}",`) && text.includes('status="401"')))
        break
      await new Promise((r) => setTimeout(r, 20))
    }
    for (const label of labels)
      expect(text).toMatch(
        new RegExp(
          `twinserve_gateway_requests_total\\{route="${label}",model="[^"]*",status="401"\\}`,
        ),
      )
  })
})
