/**
 * HTTP compression as the V2 clients use it. Requests: tritonclient's `request_compression_algorithm` sends
 * `Content-Encoding: gzip` or `deflate` (zlib format), the whole body compressed, tensors included. Responses:
 * only inference answers are ever compressed, and only with gzip or deflate, because that is all the clients read:
 * tritonclient decodes `Content-Encoding` on infer answers alone (a gzip metadata answer makes it raise
 * `UnicodeDecodeError`), and none of them decode `br` although newer aiohttp advertises it
 * (test/fixtures/v2-clients/README.md, "Response contract").
 * @module
 */
import { AppError } from '../errors.ts'

export type BodyEncoding = 'gzip' | 'deflate'

/**
 * `bytes` piped through a (de)compression stream. The casts bridge lib typings only: workerd's and Node's
 * declare these streams over BufferSource and Uint8Array respectively, and both accept Uint8Array chunks.
 */
function pipe(
  bytes: Uint8Array,
  transform: CompressionStream | DecompressionStream,
): ReadableStream<Uint8Array> {
  const source = new Response(bytes as Uint8Array<ArrayBuffer>).body as ReadableStream<Uint8Array>
  return source.pipeThrough(transform as unknown as TransformStream<Uint8Array, Uint8Array>)
}

/** The request's Content-Encoding as a codec; undefined for none or `identity`. @throws 415 for others */
export function requestEncoding(header: string | null | undefined): BodyEncoding | undefined {
  const value = (header ?? '').trim().toLowerCase()
  if (value === '' || value === 'identity') return undefined
  if (value === 'gzip' || value === 'x-gzip') return 'gzip'
  if (value === 'deflate') return 'deflate'
  throw new AppError(
    'UNSUPPORTED_MEDIA_TYPE',
    `Content-Encoding '${header}' is not supported; send gzip, deflate or an uncompressed body`,
  )
}

/**
 * Inflates a request body, refusing past `maxBytes` of output (a small gzip can inflate to gigabytes).
 * @throws AppError PAYLOAD_TOO_LARGE past the limit; INVALID_REQUEST when the bytes are not valid `encoding`
 */
export async function decompressBody(
  bytes: Uint8Array,
  encoding: BodyEncoding,
  maxBytes: number,
): Promise<Uint8Array> {
  const stream = pipe(bytes, new DecompressionStream(encoding))
  const reader = stream.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      size += value.byteLength
      if (size > maxBytes) {
        reader.cancel().catch(() => undefined)
        throw new AppError(
          'PAYLOAD_TOO_LARGE',
          `request body inflates past the limit of ${maxBytes} bytes (Content-Encoding: ${encoding})`,
        )
      }
      chunks.push(value)
    }
  } catch (err) {
    if (err instanceof AppError) throw err
    throw new AppError(
      'INVALID_REQUEST',
      `request body is not valid ${encoding} data (Content-Encoding: ${encoding})`,
    )
  }
  const out = new Uint8Array(size)
  let at = 0
  for (const c of chunks) {
    out.set(c, at)
    at += c.byteLength
  }
  return out
}

/**
 * The encoding for an inference answer given the request's Accept-Encoding: gzip when it is acceptable, else
 * deflate, else none. `q=0` refuses a coding; `*` admits gzip. Never br or zstd (see the module note).
 */
export function responseEncoding(
  acceptEncoding: string | null | undefined,
): BodyEncoding | undefined {
  if (!acceptEncoding) return undefined
  const q = new Map<string, number>()
  for (const part of acceptEncoding.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';')
    if (!name) continue
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith('q='))
    const weight = qParam === undefined ? 1 : Number(qParam.slice(2))
    q.set(name, Number.isFinite(weight) ? weight : 0)
  }
  const accepts = (coding: string) => (q.get(coding) ?? q.get('*') ?? 0) > 0
  if (accepts('gzip')) return 'gzip'
  if (accepts('deflate')) return 'deflate'
  return undefined
}

/** Compresses an answer body (the runner's and the gateway's inference answers). */
export async function compressBody(bytes: Uint8Array, encoding: BodyEncoding): Promise<Uint8Array> {
  const buf = await new Response(pipe(bytes, new CompressionStream(encoding))).arrayBuffer()
  return new Uint8Array(buf)
}
