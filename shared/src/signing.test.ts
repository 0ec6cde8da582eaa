import { describe, expect, it } from 'vitest'
import {
  CONTENT_SHA256_HEADER,
  NONCE_HEADER,
  SIGNATURE_HEADER,
  sha256Hex,
  signRequest,
  TENANT_HEADER,
  TIMESTAMP_HEADER,
  verifyRequest,
  verifySignedHeaders,
} from './signing.ts'

const secret = 'test-secret'
const req = { method: 'POST', path: '/v2/models/demo/infer', body: '{"inputs":[]}' }

describe('request signing', () => {
  it('verifies its own signature, and says what it vouches for', async () => {
    const headers = await signRequest(secret, { ...req, timestamp: 1000, tenant: 'acme' })
    const r = await verifyRequest(secret, { ...req, headers, now: 1010 })
    expect(r).toEqual({
      ok: true,
      claims: {
        timestamp: 1000,
        nonce: headers[NONCE_HEADER],
        tenant: 'acme',
        bodySha256: await sha256Hex(req.body),
      },
    })
  })

  it('gives every request its own nonce', async () => {
    const a = await signRequest(secret, req)
    const b = await signRequest(secret, req)
    expect(a[NONCE_HEADER]).toMatch(/^[0-9a-f]{32}$/)
    expect(a[NONCE_HEADER]).not.toBe(b[NONCE_HEADER])
    expect(a[SIGNATURE_HEADER]).not.toBe(b[SIGNATURE_HEADER])
  })

  it.each([
    ['another body', { body: '{"inputs":[1]}' }, 'body does not match its signed hash'],
    ['another path', { path: '/v2/models/other/infer' }, 'bad signature'],
    ['another method', { method: 'GET' }, 'bad signature'],
    ['another secret', { secret: 'other' }, 'bad signature'],
    ['an old timestamp', { now: 1000 + 301 }, 'signature expired'],
  ])('rejects %s', async (_name, change, reason) => {
    const headers = await signRequest(secret, { ...req, timestamp: 1000 })
    const { secret: s = secret, now = 1000, ...rest } = change as { secret?: string; now?: number }
    const r = await verifyRequest(s, { ...req, ...rest, headers, now })
    expect(r).toEqual({ ok: false, reason })
  })

  // Issue #16, cases 5 and 6: the tenant, the nonce and the body hash are all signed.
  it.each([
    [TENANT_HEADER, 'other-tenant', 'bad signature'],
    [NONCE_HEADER, 'ab'.repeat(16), 'bad signature'],
    [CONTENT_SHA256_HEADER, 'cd'.repeat(32), 'bad signature'],
    [TIMESTAMP_HEADER, '1001', 'bad signature'],
    [NONCE_HEADER, 'not-hex', 'malformed nonce'],
    [TENANT_HEADER, 'a b', 'malformed tenant'],
  ])('rejects a changed %s (%s)', async (name, value, reason) => {
    const headers = await signRequest(secret, { ...req, timestamp: 1000, tenant: 'acme' })
    const r = await verifySignedHeaders(secret, {
      ...req,
      headers: { ...headers, [name]: value },
      now: 1000,
    })
    expect(r).toEqual({ ok: false, reason })
  })

  it('checks the headers alone, before any body exists', async () => {
    const headers = await signRequest(secret, { ...req, timestamp: 1000 })
    const fromHeaders = new Headers(headers)
    const r = await verifySignedHeaders(secret, { ...req, headers: fromHeaders, now: 1000 })
    expect(r.ok).toBe(true)
  })

  it('rejects missing and malformed headers', async () => {
    const headers = await signRequest(secret, { ...req, timestamp: 1000 })
    const without = (name: string) =>
      Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name))
    for (const name of [TIMESTAMP_HEADER, SIGNATURE_HEADER, NONCE_HEADER, CONTENT_SHA256_HEADER])
      expect(await verifyRequest(secret, { ...req, headers: without(name), now: 1000 })).toEqual({
        ok: false,
        reason: 'missing signature headers',
      })
    expect(
      await verifyRequest(secret, {
        ...req,
        headers: { ...headers, [SIGNATURE_HEADER]: 'zz' },
        now: 1000,
      }),
    ).toEqual({ ok: false, reason: 'malformed signature' })
  })
})
