/**
 * Reads a request body as UTF-8 text without buffering past a byte limit, whether or not Content-Length says
 * how big it is (a chunked body is counted while it streams), and within a time limit (a body trickled a few
 * bytes a second would otherwise hold the request open forever). Shared by the gateway (workerd) and the runner
 * (Node): both take web-standard `Request`s.
 * @module
 */
import { AppError } from './errors.ts'

type Reader = ReadableStreamDefaultReader<Uint8Array>
type ReadResult = Awaited<ReturnType<Reader['read']>>

export interface ReadBodyOptions {
  /** How the 413 message names the limit, e.g. `the runner's limit`. */
  limitName?: string
  /** The whole body must have arrived within this many ms from the call (408 REQUEST_TIMEOUT otherwise). */
  timeoutMs?: number
  /** Sees every chunk as it arrives, before the next is read (e.g. a streaming hash for a signature check). */
  onChunk?: (chunk: Uint8Array) => void
}

/**
 * A promise that rejects with REQUEST_TIMEOUT `timeoutMs` from now, raced against every read of one body: one
 * timer per body, not one per chunk (timers were an eighth of the gateway's CPU profile, issue #17).
 */
function bodyTimeout(timeoutMs: number, received: () => number) {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new AppError(
            'REQUEST_TIMEOUT',
            `request body not received within ${timeoutMs} ms (${received()} bytes arrived)`,
          ),
        ),
      timeoutMs,
    )
  })
  // Unraced after the last read: a rejection then is nobody's concern.
  late.catch(() => undefined)
  return {
    late,
    clear: () => {
      if (timer !== undefined) clearTimeout(timer)
    },
  }
}

/**
 * The body's bytes as sent (binary tensor bodies are not text).
 * @throws AppError PAYLOAD_TOO_LARGE over `maxBytes`; REQUEST_TIMEOUT past `timeoutMs`; CLIENT_CLOSED when the
 * connection breaks mid-body
 */
export async function readBodyBytes(
  req: Request,
  maxBytes: number,
  options: ReadBodyOptions = {},
): Promise<Uint8Array> {
  const limitName = options.limitName ?? 'the limit'
  const declared = req.headers.get('content-length')
  if (declared !== null && Number(declared) > maxBytes)
    throw new AppError(
      'PAYLOAD_TOO_LARGE',
      `request body of ${declared} bytes exceeds ${limitName} of ${maxBytes} bytes`,
    )
  if (!req.body) return new Uint8Array(0)
  const reader = req.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  const timeout =
    options.timeoutMs === undefined ? undefined : bodyTimeout(options.timeoutMs, () => size)
  try {
    for (;;) {
      let step: ReadResult
      try {
        step = await (timeout ? Promise.race([reader.read(), timeout.late]) : reader.read())
      } catch (err) {
        reader.cancel().catch(() => undefined)
        if (err instanceof AppError) throw err
        // The stream broke: the client went away (or its connection did) while sending.
        throw new AppError(
          'CLIENT_CLOSED',
          'the client closed the connection while sending the body',
          {
            cause: err,
          },
        )
      }
      const { done, value } = step
      if (done) break
      size += value.byteLength
      if (size > maxBytes) {
        reader.cancel().catch(() => undefined)
        throw new AppError(
          'PAYLOAD_TOO_LARGE',
          `request body exceeds ${limitName} of ${maxBytes} bytes`,
        )
      }
      options.onChunk?.(value)
      chunks.push(value)
    }
  } finally {
    timeout?.clear()
  }
  const all = new Uint8Array(size)
  let offset = 0
  for (const c of chunks) {
    all.set(c, offset)
    offset += c.byteLength
  }
  return all
}

/** Bytes as UTF-8 text. @throws AppError INVALID_REQUEST when they are not UTF-8 */
export function utf8Text(bytes: Uint8Array, what = 'body'): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes)
  } catch {
    throw new AppError('INVALID_REQUEST', `${what} is not valid UTF-8`)
  }
}

/**
 * @throws AppError PAYLOAD_TOO_LARGE over `maxBytes`; REQUEST_TIMEOUT past `timeoutMs`; CLIENT_CLOSED when the
 * connection breaks mid-body; INVALID_REQUEST when the bytes are not UTF-8
 */
export async function readBodyText(
  req: Request,
  maxBytes: number,
  options: ReadBodyOptions = {},
): Promise<string> {
  return utf8Text(await readBodyBytes(req, maxBytes, options))
}
