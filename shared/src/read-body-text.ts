/**
 * Reads a request body as UTF-8 text without buffering past a byte limit, whether or not Content-Length says
 * how big it is (a chunked body is counted while it streams). Shared by the gateway (workerd) and the runner
 * (Node): both take web-standard `Request`s.
 * @module
 */
import { AppError } from './errors.ts'

/**
 * @param limitName how the 413 message names the limit, e.g. `the runner's limit`
 * @throws AppError PAYLOAD_TOO_LARGE over `maxBytes`; INVALID_REQUEST when the bytes are not UTF-8
 */
export async function readBodyText(
  req: Request,
  maxBytes: number,
  limitName = 'the limit',
): Promise<string> {
  const declared = req.headers.get('content-length')
  if (declared !== null && Number(declared) > maxBytes)
    throw new AppError(
      'PAYLOAD_TOO_LARGE',
      `request body of ${declared} bytes exceeds ${limitName} of ${maxBytes} bytes`,
    )
  if (!req.body) return ''
  const reader = req.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel()
      throw new AppError(
        'PAYLOAD_TOO_LARGE',
        `request body exceeds ${limitName} of ${maxBytes} bytes`,
      )
    }
    chunks.push(value)
  }
  const all = new Uint8Array(size)
  let offset = 0
  for (const c of chunks) {
    all.set(c, offset)
    offset += c.byteLength
  }
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(all)
  } catch {
    throw new AppError('INVALID_REQUEST', 'body is not valid UTF-8')
  }
}
