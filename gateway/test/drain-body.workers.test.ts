import { describe, expect, it } from 'vitest'
import { DRAIN_LIMIT_BYTES, DRAIN_WAIT_MS, drainSmallBody } from '../src/http/index.ts'

const post = (body: BodyInit, headers: Record<string, string> = {}) =>
  new Request('http://gateway.test/v2/models/m/infer', { method: 'POST', body, headers })

describe('drainSmallBody (early error answers keep the connection reusable)', () => {
  it('reads a small body with a Content-Length to its end', async () => {
    const req = post('x'.repeat(7_000), { 'content-length': '7000' })
    await drainSmallBody(req)
    expect(req.bodyUsed).toBe(true)
  })

  it('leaves a body above the limit, one without a length, and one already read', async () => {
    const big = post('x'.repeat(DRAIN_LIMIT_BYTES + 1), {
      'content-length': String(DRAIN_LIMIT_BYTES + 1),
    })
    await drainSmallBody(big)
    expect(big.bodyUsed).toBe(false)
    const chunked = post(new Blob(['abc']).stream())
    chunked.headers.delete('content-length')
    await drainSmallBody(chunked)
    expect(chunked.bodyUsed).toBe(false)
    const read = post('{}', { 'content-length': '2' })
    await read.text()
    await expect(drainSmallBody(read)).resolves.toBeUndefined()
  })

  it('gives up on a body that never ends, after the wait', async () => {
    const never = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"inputs"'))
      },
    })
    const req = post(never, { 'content-length': '1000' })
    const t0 = Date.now()
    await drainSmallBody(req)
    const waited = Date.now() - t0
    expect(waited).toBeGreaterThanOrEqual(DRAIN_WAIT_MS - 50)
    expect(waited).toBeLessThan(DRAIN_WAIT_MS + 2000)
  })
})
