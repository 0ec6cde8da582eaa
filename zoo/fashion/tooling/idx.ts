/**
 * A reader for the IDX format (LeCun's MNIST files, also Fashion-MNIST), plain or gzipped. The header is
 * checked strictly: two zero bytes, the element type, the rank, then one big-endian uint32 per dimension; the
 * payload must hold exactly the product of the dimensions. A file that fails a check is refused with what was
 * found and what was expected, never half-read.
 * @see http://yann.lecun.com/exdb/mnist/ (format description)
 * @module
 */
import { readFileSync } from 'node:fs'
import { gunzipSync } from 'node:zlib'
import { AppError } from '@twinserve/shared'

/** IDX type byte 0x08: unsigned byte, the only element type MNIST-style image and label files use. */
export const IDX_UBYTE = 0x08

export interface IdxArray {
  dims: number[]
  /** Row-major, product(dims) elements. */
  data: Uint8Array
}

export interface IdxExpect {
  /** Expected rank (3 for images [n, rows, cols], 1 for labels [n]). */
  rank?: number
  /** Expected sizes per dimension; undefined entries are not checked. */
  dims?: ReadonlyArray<number | undefined>
}

function corrupt(source: string, message: string, cause?: unknown): AppError {
  return new AppError(
    'INVALID_MODEL',
    `IDX file ${source}: ${message}`,
    cause === undefined ? undefined : { cause },
  )
}

/** Parses IDX bytes (gunzipped first when they start with the gzip magic 1f 8b). */
export function parseIdx(bytes: Uint8Array, source: string, expect: IdxExpect = {}): IdxArray {
  let raw = bytes
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      raw = gunzipSync(raw)
    } catch (err) {
      throw corrupt(source, `gzip data is corrupt or truncated (${(err as Error).message})`, err)
    }
  }
  if (raw.length < 4) throw corrupt(source, `${raw.length} bytes is too short for an IDX header`)
  const magic =
    ((raw[0] as number) << 24) |
    ((raw[1] as number) << 16) |
    ((raw[2] as number) << 8) |
    (raw[3] as number)
  const hex = `0x${(magic >>> 0).toString(16).padStart(8, '0')}`
  if (raw[0] !== 0 || raw[1] !== 0)
    throw corrupt(source, `bad magic number ${hex}: an IDX file starts with two zero bytes`)
  if (raw[2] !== IDX_UBYTE)
    throw corrupt(
      source,
      `element type 0x${(raw[2] as number).toString(16).padStart(2, '0')} (magic ${hex}) is not supported; only unsigned byte (0x08) is`,
    )
  const rank = raw[3] as number
  if (rank < 1) throw corrupt(source, `magic ${hex} declares rank 0`)
  if (expect.rank !== undefined && rank !== expect.rank)
    throw corrupt(
      source,
      `magic ${hex} declares rank ${rank}, expected ${expect.rank} (0x0000080${expect.rank})`,
    )
  const header = 4 + 4 * rank
  if (raw.length < header)
    throw corrupt(
      source,
      `${raw.length} bytes is too short for a rank-${rank} header (${header} bytes)`,
    )
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  const dims: number[] = []
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false))
  expect.dims?.forEach((want, i) => {
    if (want !== undefined && dims[i] !== want)
      throw corrupt(source, `dimension ${i} is ${dims[i]}, expected ${want} (dims [${dims}])`)
  })
  const count = dims.reduce((a, b) => a * b, 1)
  const payload = raw.length - header
  if (payload !== count)
    throw corrupt(
      source,
      `header says dims [${dims}] = ${count} bytes of data, file has ${payload} (${payload < count ? 'truncated' : 'trailing bytes'})`,
    )
  // Copy out (Buffer#slice would be a view) so the whole file buffer is not kept alive by the result.
  return { dims, data: new Uint8Array(raw.subarray(header)) }
}

/** Reads and parses an IDX file; a missing file is NOT_FOUND, a malformed one INVALID_MODEL. */
export function readIdx(path: string, expect: IdxExpect = {}): IdxArray {
  let bytes: Uint8Array
  try {
    bytes = readFileSync(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new AppError(
      code === 'ENOENT' ? 'NOT_FOUND' : 'INVALID_MODEL',
      `IDX file ${path}: cannot read (${code ?? (err as Error).message})`,
      { cause: err },
    )
  }
  return parseIdx(bytes, path, expect)
}
