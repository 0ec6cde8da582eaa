/**
 * Raw tensor bytes of the binary tensor data extension: little-endian, row-major, no padding; BYTES elements are
 * each a 4-byte little-endian length followed by that many bytes. Runtime-neutral (DataView, TextEncoder), so the
 * gateway (workerd) and the runner (Node) read and write the same bytes.
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md
 * @module
 */
import { AppError } from '../errors.ts'
import type { Datatype } from '../schemas/inference.ts'

/** Bytes per element; BYTES has none (each element carries its own length). */
export const ELEMENT_BYTES: Readonly<Record<Exclude<Datatype, 'BYTES'>, number>> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  FP16: 2,
  UINT32: 4,
  INT32: 4,
  FP32: 4,
  UINT64: 8,
  INT64: 8,
  FP64: 8,
}

export type Element = number | boolean | string

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const encoder = new TextEncoder()

/** IEEE 754 half → number (the FP16 wire form; JS has no Float16Array in Node 20). */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024)
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY
  return sign * 2 ** (exp - 15) * (1 + frac / 1024)
}

/** number → IEEE 754 half, round to nearest even (callers range-check first: |x| ≤ 65504). */
function numberToHalf(x: number): number {
  const f32 = new Float32Array(1)
  const u32 = new Uint32Array(f32.buffer)
  f32[0] = x
  const bits = u32[0] as number
  const sign = (bits >>> 16) & 0x8000
  const exp = (bits >>> 23) & 0xff
  let frac = bits & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (frac ? 0x200 : 0)
  const e = exp - 127 + 15
  if (e >= 0x1f) return sign | 0x7c00
  if (e <= 0) {
    if (e < -10) return sign
    frac |= 0x800000
    const shift = 14 - e
    const half = frac >> shift
    const rest = frac & ((1 << shift) - 1)
    const mid = 1 << (shift - 1)
    return sign | (half + (rest > mid || (rest === mid && half & 1) ? 1 : 0))
  }
  const half = (e << 10) | (frac >> 13)
  const rest = frac & 0x1fff
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0))
}

/** How many BYTES elements `bytes` holds, checking every length prefix (no strings are made). */
export function countBytesElements(bytes: Uint8Array, what: string): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let n = 0
  for (let at = 0; at < bytes.byteLength; n++) {
    if (at + 4 > bytes.byteLength)
      throw new AppError(
        'INVALID_REQUEST',
        `${what}: BYTES element ${n} has a truncated length prefix`,
      )
    at += 4 + view.getUint32(at, true)
    if (at > bytes.byteLength)
      throw new AppError(
        'INVALID_REQUEST',
        `${what}: BYTES element ${n} runs past the tensor's bytes`,
      )
  }
  return n
}

/**
 * The elements of one tensor's raw bytes, for a schema to check like JSON `data`.
 * @param what names the tensor in errors, e.g. `inputs[0] 'pixels'`
 * @throws AppError INVALID_REQUEST when the byte count does not fit `elements` values of `datatype`, a 64-bit
 * integer is beyond 2^53 (JSON numbers could not hold it either), or a BYTES element is not UTF-8
 */
export function decodeTensorBytes(
  datatype: Datatype,
  bytes: Uint8Array,
  elements: number,
  what: string,
): Element[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (datatype === 'BYTES') {
    const out: string[] = []
    let at = 0
    while (at < bytes.byteLength) {
      if (at + 4 > bytes.byteLength)
        throw new AppError(
          'INVALID_REQUEST',
          `${what}: BYTES element ${out.length} has a truncated length prefix`,
        )
      const len = view.getUint32(at, true)
      at += 4
      if (at + len > bytes.byteLength)
        throw new AppError(
          'INVALID_REQUEST',
          `${what}: BYTES element ${out.length} runs past the tensor's bytes`,
        )
      try {
        out.push(utf8.decode(bytes.subarray(at, at + len)))
      } catch {
        throw new AppError(
          'INVALID_REQUEST',
          `${what}: BYTES element ${out.length} is not UTF-8 (this server's BYTES inputs are text)`,
        )
      }
      at += len
    }
    if (out.length !== elements)
      throw new AppError(
        'INVALID_REQUEST',
        `${what}: ${out.length} BYTES elements where its shape holds ${elements}`,
      )
    return out
  }
  const size = ELEMENT_BYTES[datatype]
  if (bytes.byteLength !== elements * size)
    throw new AppError(
      'INVALID_REQUEST',
      `${what}: ${bytes.byteLength} bytes where ${elements} ${datatype} values take ${elements * size}`,
    )
  const out = new Array<Element>(elements)
  for (let i = 0; i < elements; i++) {
    const at = i * size
    switch (datatype) {
      case 'BOOL':
        out[i] = view.getUint8(at) !== 0
        break
      case 'UINT8':
        out[i] = view.getUint8(at)
        break
      case 'INT8':
        out[i] = view.getInt8(at)
        break
      case 'UINT16':
        out[i] = view.getUint16(at, true)
        break
      case 'INT16':
        out[i] = view.getInt16(at, true)
        break
      case 'FP16':
        out[i] = halfToNumber(view.getUint16(at, true))
        break
      case 'UINT32':
        out[i] = view.getUint32(at, true)
        break
      case 'INT32':
        out[i] = view.getInt32(at, true)
        break
      case 'FP32':
        out[i] = view.getFloat32(at, true)
        break
      case 'FP64':
        out[i] = view.getFloat64(at, true)
        break
      case 'UINT64':
      case 'INT64': {
        const big = datatype === 'INT64' ? view.getBigInt64(at, true) : view.getBigUint64(at, true)
        const n = Number(big)
        if (!Number.isSafeInteger(n))
          throw new AppError(
            'INVALID_REQUEST',
            `${what}: element ${i} (${big}) is beyond ±2^53, which this server cannot hold exactly`,
          )
        out[i] = n
        break
      }
    }
  }
  return out
}

/** One tensor's elements as raw bytes (the response side; values were produced by the model, so in range). */
export function encodeTensorBytes(datatype: Datatype, data: readonly Element[]): Uint8Array {
  if (datatype === 'BYTES') {
    const parts = data.map((v) => encoder.encode(String(v)))
    const out = new Uint8Array(parts.reduce((a, p) => a + 4 + p.byteLength, 0))
    const view = new DataView(out.buffer)
    let at = 0
    for (const p of parts) {
      view.setUint32(at, p.byteLength, true)
      out.set(p, at + 4)
      at += 4 + p.byteLength
    }
    return out
  }
  const size = ELEMENT_BYTES[datatype]
  const out = new Uint8Array(data.length * size)
  const view = new DataView(out.buffer)
  data.forEach((v, i) => {
    const at = i * size
    const x = Number(v)
    switch (datatype) {
      case 'BOOL':
        view.setUint8(at, v ? 1 : 0)
        break
      case 'UINT8':
        view.setUint8(at, x)
        break
      case 'INT8':
        view.setInt8(at, x)
        break
      case 'UINT16':
        view.setUint16(at, x, true)
        break
      case 'INT16':
        view.setInt16(at, x, true)
        break
      case 'FP16':
        view.setUint16(at, numberToHalf(x), true)
        break
      case 'UINT32':
        view.setUint32(at, x, true)
        break
      case 'INT32':
        view.setInt32(at, x, true)
        break
      case 'FP32':
        view.setFloat32(at, x, true)
        break
      case 'FP64':
        view.setFloat64(at, x, true)
        break
      case 'UINT64':
        view.setBigUint64(at, BigInt(Math.trunc(x)), true)
        break
      case 'INT64':
        view.setBigInt64(at, BigInt(Math.trunc(x)), true)
        break
    }
  })
  return out
}
