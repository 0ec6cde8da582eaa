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
      readBodyText(post('x'.repeat(10), { 'content-length': '10' }), 8, {
        limitName: "the runner's limit",
      }),
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

  // Issue #16 (faults): a body trickled at 5 bytes/s was read for as long as the client kept sending.
  it('refuses a body that does not arrive within the deadline with 408 REQUEST_TIMEOUT', async () => {
    const enc = new TextEncoder()
    let timer: ReturnType<typeof setInterval> | undefined
    const trickle = new ReadableStream<Uint8Array>({
      start(ctrl) {
        timer = setInterval(() => ctrl.enqueue(enc.encode('x')), 20)
      },
      cancel() {
        clearInterval(timer)
      },
    })
    const started = Date.now()
    const err = await errorOf(readBodyText(post(trickle), 1_000_000, { timeoutMs: 150 }))
    expect(err.code).toBe('REQUEST_TIMEOUT')
    expect(err.status).toBe(408)
    expect(err.message).toMatch(/request body not received within 150 ms \(\d+ bytes arrived\)/)
    expect(Date.now() - started).toBeLessThan(1000)
    clearInterval(timer)
  })

  it('calls it CLIENT_CLOSED (499) when the body stream breaks mid-way', async () => {
    const broken = new ReadableStream<Uint8Array>({
      start(ctrl) {
        ctrl.enqueue(new TextEncoder().encode('{"a":'))
        ctrl.error(new TypeError('Network connection lost.'))
      },
    })
    const err = await errorOf(readBodyText(post(broken), 1024, { timeoutMs: 5000 }))
    expect(err.code).toBe('CLIENT_CLOSED')
    expect(err.status).toBe(499)
  })

  it('hands every chunk to onChunk as it arrives', async () => {
    const seen: string[] = []
    const dec = new TextDecoder()
    await readBodyText(post(chunked('ab', 'cd', 'e')), 8, {
      onChunk: (c) => seen.push(dec.decode(c)),
    })
    expect(seen).toEqual(['ab', 'cd', 'e'])
  })
})
