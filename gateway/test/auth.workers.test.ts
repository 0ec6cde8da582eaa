import { env } from 'cloudflare:test'
import { ApiKeyListSchema, ApiKeySchema, sha256Hex } from '@twinserve/shared'
import { beforeAll, describe, expect, it } from 'vitest'
import { bearer, createKey, expectError, gw, migrate } from './helpers.ts'
import { TEST_ADMIN_SECRET, TEST_AUTH_CACHE_TTL_MS } from './test-env.ts'

beforeAll(migrate)

/** A model route that passes auth without a runner: 503 {ready:false} means "authenticated and allowed". */
const modelReady = (model: string, headers: Record<string, string> = {}) =>
  gw(`/v2/models/${model}/ready`, { headers })

describe('API key authentication (inside workerd, real D1)', () => {
  it('401 without a key, with a malformed header, an unknown key or a non-key string', async () => {
    await expectError(await modelReady('alpha'), 401, 'UNAUTHENTICATED')
    await expectError(
      await modelReady('alpha', { authorization: 'Basic dXNlcjpwYXNz' }),
      401,
      'UNAUTHENTICATED',
    )
    const unknown = `tsk_${'A'.repeat(43)}`
    const body = await expectError(
      await modelReady('alpha', bearer(unknown)),
      401,
      'UNAUTHENTICATED',
    )
    expect(body.error).toMatch(/invalid API key/)
    await expectError(await modelReady('alpha', bearer('not-a-key')), 401, 'UNAUTHENTICATED')
  })

  it('a valid infer key passes; revoking it makes the same key 401 at once', async () => {
    const key = await createKey({ tenant: 'acme', scopes: ['infer'], models: ['alpha'] })
    const ok = await modelReady('alpha', bearer(key.key))
    expect(ok.status).toBe(503)
    expect(await ok.json()).toEqual({ name: 'alpha', ready: false })

    const revoke = await gw(`/admin/keys/${key.id}`, {
      method: 'DELETE',
      headers: bearer(TEST_ADMIN_SECRET),
    })
    expect(revoke.status).toBe(200)
    const revoked = ApiKeySchema.parse(await revoke.json())
    expect(revoked.revoked_at).not.toBeNull()

    const body = await expectError(
      await modelReady('alpha', bearer(key.key)),
      401,
      'UNAUTHENTICATED',
    )
    expect(body.error).toMatch(/revoked/)
  })

  it('a key revoked by another isolate (straight in D1) stops working within AUTH_CACHE_TTL_MS', async () => {
    const key = await createKey({ tenant: 'acme', scopes: ['infer'], models: ['alpha'] })
    expect((await modelReady('alpha', bearer(key.key))).status).toBe(503)
    await env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?')
      .bind(new Date().toISOString(), key.id)
      .run()
    // Still cached here: this isolate did not see the revocation.
    expect((await modelReady('alpha', bearer(key.key))).status).toBe(503)
    await new Promise((r) => setTimeout(r, TEST_AUTH_CACHE_TTL_MS + 50))
    await expectError(await modelReady('alpha', bearer(key.key)), 401, 'UNAUTHENTICATED')
  })

  it('403 for a key outside its models; "*" covers every model', async () => {
    const alphaOnly = await createKey({ tenant: 'acme', scopes: ['infer'], models: ['alpha'] })
    const body = await expectError(
      await modelReady('beta', bearer(alphaOnly.key)),
      403,
      'FORBIDDEN',
    )
    expect(body.error).toMatch(/model 'beta'/)
    const infer = await gw('/v2/models/beta/infer', {
      method: 'POST',
      headers: { ...bearer(alphaOnly.key), 'content-type': 'application/json' },
      body: '{}',
    })
    await expectError(infer, 403, 'FORBIDDEN')

    const all = await createKey({ tenant: 'acme', scopes: ['infer'], models: ['*'] })
    expect((await modelReady('beta', bearer(all.key))).status).toBe(503)
    expect((await modelReady('gamma', bearer(all.key))).status).toBe(503)
  })

  it('403 for a key without the scope: infer keys on admin routes, admin keys on model routes', async () => {
    const inferKey = await createKey({ tenant: 'acme', scopes: ['infer'], models: ['*'] })
    for (const [path, method] of [
      ['/admin/keys', 'GET'],
      ['/admin/keys', 'POST'],
      ['/admin/keys/key_0123456789abcdef', 'DELETE'],
      ['/admin/runners', 'GET'],
      ['/metrics', 'GET'],
    ] as const) {
      const body = await expectError(
        await gw(path, {
          method,
          headers: { ...bearer(inferKey.key), 'content-type': 'application/json' },
          body: method === 'POST' ? '{}' : null,
        }),
        403,
        'FORBIDDEN',
      )
      expect(body.error).toMatch(/'admin' scope/)
    }
    const adminKey = await createKey({ tenant: 'ops', scopes: ['admin'] })
    await expectError(await modelReady('alpha', bearer(adminKey.key)), 403, 'FORBIDDEN')
    // The bootstrap secret is admin-only as well: it creates keys but runs no inference.
    await expectError(await modelReady('alpha', bearer(TEST_ADMIN_SECRET)), 403, 'FORBIDDEN')
    expect((await gw('/admin/runners', { headers: bearer(adminKey.key) })).status).toBe(200)
  })

  it('admin routes without a key are 401, and a near-miss of the bootstrap secret is not accepted', async () => {
    await expectError(await gw('/admin/keys'), 401, 'UNAUTHENTICATED')
    await expectError(await gw('/metrics'), 401, 'UNAUTHENTICATED')
    await expectError(
      await gw('/admin/keys', { headers: bearer(`${TEST_ADMIN_SECRET}x`) }),
      401,
      'UNAUTHENTICATED',
    )
  })
})

describe('admin key API', () => {
  it('stores only the SHA-256 of a key, and shows the key once', async () => {
    const key = await createKey({
      tenant: 'hash-check',
      name: 'ci',
      scopes: ['infer', 'admin'],
      models: ['alpha', 'alpha'],
      rate_limit: { requests_per_second: 5, burst: 10 },
      daily_quota: 1000,
      tokens_per_minute: 5000,
    })
    expect(key.key).toMatch(/^tsk_[A-Za-z0-9_-]{43}$/)
    expect(key.prefix).toBe(key.key.slice(0, 12))
    expect(key.models).toEqual(['alpha'])
    const row = await env.DB.prepare('SELECT * FROM api_keys WHERE id = ?').bind(key.id).first()
    expect(row?.key_hash).toBe(await sha256Hex(key.key))
    expect(Object.values(row ?? {})).not.toContain(key.key)

    const list = ApiKeyListSchema.parse(
      await (
        await gw('/admin/keys?tenant=hash-check', { headers: bearer(TEST_ADMIN_SECRET) })
      ).json(),
    )
    expect(list.keys).toHaveLength(1)
    expect(list.keys[0]).toEqual({
      id: key.id,
      prefix: key.prefix,
      tenant: 'hash-check',
      name: 'ci',
      scopes: ['infer', 'admin'],
      models: ['alpha'],
      rate_limit: { requests_per_second: 5, burst: 10 },
      daily_quota: 1000,
      tokens_per_minute: 5000,
      created_at: key.created_at,
      revoked_at: null,
    })
    expect(JSON.stringify(list)).not.toContain(key.key)
  })

  it('lists by tenant, hides revoked keys unless asked, and revokes idempotently', async () => {
    const a = await createKey({ tenant: 'list-t', scopes: ['infer'], models: ['*'] })
    const b = await createKey({ tenant: 'list-t', scopes: ['infer'], models: ['*'] })
    await createKey({ tenant: 'other-t', scopes: ['infer'], models: ['*'] })
    const first = await gw(`/admin/keys/${a.id}`, {
      method: 'DELETE',
      headers: bearer(TEST_ADMIN_SECRET),
    })
    const again = await gw(`/admin/keys/${a.id}`, {
      method: 'DELETE',
      headers: bearer(TEST_ADMIN_SECRET),
    })
    const t1 = ApiKeySchema.parse(await first.json()).revoked_at
    expect(ApiKeySchema.parse(await again.json()).revoked_at).toBe(t1)

    const list = async (q: string) =>
      ApiKeyListSchema.parse(
        await (await gw(`/admin/keys?${q}`, { headers: bearer(TEST_ADMIN_SECRET) })).json(),
      ).keys.map((k) => k.id)
    expect(await list('tenant=list-t')).toEqual([b.id])
    expect(new Set(await list('tenant=list-t&include_revoked=true'))).toEqual(new Set([a.id, b.id]))
  })

  it('rejects bad admin input with 400 naming the problem; unknown ids are 404', async () => {
    const post = (body: unknown) =>
      gw('/admin/keys', {
        method: 'POST',
        headers: { ...bearer(TEST_ADMIN_SECRET), 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    const cases: Array<[unknown, RegExp]> = [
      [
        { tenant: 'x', scopes: ['infer'] },
        /models: a key with the infer scope needs at least one model/,
      ],
      [{ tenant: 'x', scopes: ['root'] }, /scopes\.0/],
      [{ tenant: 'x', scopes: [] }, /scopes/],
      [{ tenant: 'bad tenant!', scopes: ['admin'] }, /tenant/],
      [{ tenant: 'x', scopes: ['admin'], superuser: true }, /superuser/],
      [{ tenant: 'x', scopes: ['infer'], models: ['Bad Name'] }, /models\.0/],
      [
        { tenant: 'x', scopes: ['admin'], rate_limit: { requests_per_second: 0, burst: 1 } },
        /rate_limit\.requests_per_second/,
      ],
    ]
    for (const [body, message] of cases) {
      const err = await expectError(await post(body), 400, 'INVALID_REQUEST')
      expect(err.error).toMatch(message)
    }
    const notJson = await gw('/admin/keys', {
      method: 'POST',
      headers: { ...bearer(TEST_ADMIN_SECRET), 'content-type': 'application/json' },
      body: '{"tenant":',
    })
    expect((await expectError(notJson, 400, 'INVALID_REQUEST')).error).toMatch(/not valid JSON/)
    const wrongType = await gw('/admin/keys', {
      method: 'POST',
      headers: { ...bearer(TEST_ADMIN_SECRET), 'content-type': 'text/plain' },
      body: '{}',
    })
    await expectError(wrongType, 415, 'UNSUPPORTED_MEDIA_TYPE')

    await expectError(
      await gw('/admin/keys/key_ffffffffffffffff', {
        method: 'DELETE',
        headers: bearer(TEST_ADMIN_SECRET),
      }),
      404,
      'NOT_FOUND',
    )
    await expectError(
      await gw('/admin/keys/nope', { method: 'DELETE', headers: bearer(TEST_ADMIN_SECRET) }),
      400,
      'INVALID_REQUEST',
    )
    await expectError(
      await gw('/admin/keys?include_revoked=maybe', { headers: bearer(TEST_ADMIN_SECRET) }),
      400,
      'INVALID_REQUEST',
    )
  })
})
