import { describe, expect, it } from 'vitest'
import { signRequest, verifyRequest } from './signing.ts'

const secret = 'test-secret'
const req = { method: 'POST', path: '/v2/models/demo/infer', body: '{"inputs":[]}' }

describe('request signing', () => {
  it('verifies its own signature', async () => {
    const h = await signRequest(secret, { ...req, timestamp: 1000 })
    const r = await verifyRequest(secret, {
      ...req,
      timestampHeader: h['x-twinserve-timestamp'],
      signatureHeader: h['x-twinserve-signature'],
      now: 1010,
    })
    expect(r).toEqual({ ok: true })
  })

  it.each([
    ['another body', { body: '{"inputs":[1]}' }, 'bad signature'],
    ['another path', { path: '/v2/models/other/infer' }, 'bad signature'],
    ['another method', { method: 'GET' }, 'bad signature'],
    ['another secret', { secret: 'other' }, 'bad signature'],
    ['an old timestamp', { now: 1000 + 301 }, 'signature expired'],
  ])('rejects %s', async (_name, change, reason) => {
    const h = await signRequest(secret, { ...req, timestamp: 1000 })
    const {
      secret: s = secret,
      now = 1000,
      ...rest
    } = change as {
      secret?: string
      now?: number
      body?: string
      path?: string
      method?: string
    }
    const r = await verifyRequest(s, {
      ...req,
      ...rest,
      timestampHeader: h['x-twinserve-timestamp'],
      signatureHeader: h['x-twinserve-signature'],
      now,
    })
    expect(r).toEqual({ ok: false, reason })
  })

  it('rejects missing and malformed headers', async () => {
    expect(
      await verifyRequest(secret, { ...req, timestampHeader: null, signatureHeader: 'ab' }),
    ).toEqual({
      ok: false,
      reason: 'missing signature headers',
    })
    const now = 1000
    expect(
      await verifyRequest(secret, { ...req, timestampHeader: '1000', signatureHeader: 'zz', now }),
    ).toEqual({
      ok: false,
      reason: 'malformed signature',
    })
  })
})
