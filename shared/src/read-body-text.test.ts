import { describe, expect, it } from 'vitest'
import { AppError } from './errors.ts'
import { readBodyText } from './read-body-text.ts'

const post = (body: BodyInit, headers: Record<string, string> = {}) =>
  new Request('http://x/', { method: 'POST', body, headers, duplex: 'half' } as RequestInit)

/** A body with no Content-Length: the limit must be enforced while reading. */
function chunked(...parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder()
  return new ReadableStream({
    start(ctrl) {
      for (const p of parts) ctrl.enqueue(enc.encode(p))
      ctrl.close()
    },
  })
}

async function errorOf(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  if (!(err instanceof AppError)) throw new Error(`expected an AppError, got ${String(err)}`)
  return err
}

describe('readBodyText', () => {
  it('returns the text of a body within the limit, and "" for none', async () => {
    expect(await readBodyText(post('{"a":"é"}'), 64)).toBe('{"a":"é"}')
    expect(await readBodyText(post(chunked('ab', 'cd')), 4)).toBe('abcd')
    expect(await readBodyText(new Request('http://x/'), 4)).toBe('')
  })

  it('refuses more than the limit, by Content-Length or while streaming, naming the limit', async () => {
    const declared = await errorOf(
      readBodyText(post('x'.repeat(10), { 'content-length': '10' }), 8, "the runner's limit"),
    )
    expect(declared.code).toBe('PAYLOAD_TOO_LARGE')
    expect(declared.message).toBe("request body of 10 bytes exceeds the runner's limit of 8 bytes")
    const streamed = await errorOf(readBodyText(post(chunked('abcd', 'efgh', 'i')), 8))
    expect(streamed.code).toBe('PAYLOAD_TOO_LARGE')
    expect(streamed.message).toBe('request body exceeds the limit of 8 bytes')
  })

  it('refuses bytes that are not UTF-8 with INVALID_REQUEST', async () => {
    const err = await errorOf(readBodyText(post(new Uint8Array([0x7b, 0xff, 0x7d])), 8))
    expect(err.code).toBe('INVALID_REQUEST')
  })
})
