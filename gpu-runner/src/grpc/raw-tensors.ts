/**
 * `raw_input_contents` / `raw_output_contents`: a tensor's elements, row-major, little-endian, without padding,
 * as Triton and KServe lay them out. BOOL is one byte per element; FP16 is the IEEE half's bits; BYTES is each
 * element's length (4 bytes, little-endian) followed by its bytes.
 *
 * Decoding yields the same values a JSON request carries (numbers, booleans, UTF-8 strings), so the converted
 * request goes through the REST request schema and gets the same checks (ranges, finiteness, element count).
 * @module
 */
import { AppError, type Datatype } from '@twinserve/shared'
import { fromFloat16Bits, toFloat16Bits } from '../onnx/float16.ts'

export type TensorValue = number | boolean | string

/** Bytes per element of each fixed-size datatype (BYTES has none). */
export const ELEMENT_BYTES: Record<Exclude<Datatype, 'BYTES'>, number> = {
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

const READ: Record<Exclude<Datatype, 'BYTES'>, (v: DataView, at: number) => TensorValue> = {
  BOOL: (v, at) => v.getUint8(at) !== 0,
  UINT8: (v, at) => v.getUint8(at),
  INT8: (v, at) => v.getInt8(at),
  UINT16: (v, at) => v.getUint16(at, true),
  INT16: (v, at) => v.getInt16(at, true),
  FP16: (v, at) => fromFloat16Bits(v.getUint16(at, true)),
  UINT32: (v, at) => v.getUint32(at, true),
  INT32: (v, at) => v.getInt32(at, true),
  FP32: (v, at) => v.getFloat32(at, true),
  // Beyond ±2^53 the number is no longer exact; the request schema then refuses it as out of range.
  UINT64: (v, at) => Number(v.getBigUint64(at, true)),
  INT64: (v, at) => Number(v.getBigInt64(at, true)),
  FP64: (v, at) => v.getFloat64(at, true),
}

const WRITE: Record<
  Exclude<Datatype, 'BYTES'>,
  (v: DataView, at: number, x: TensorValue) => void
> = {
  BOOL: (v, at, x) => v.setUint8(at, x ? 1 : 0),
  UINT8: (v, at, x) => v.setUint8(at, Number(x)),
  INT8: (v, at, x) => v.setInt8(at, Number(x)),
  UINT16: (v, at, x) => v.setUint16(at, Number(x), true),
  INT16: (v, at, x) => v.setInt16(at, Number(x), true),
  FP16: (v, at, x) => v.setUint16(at, toFloat16Bits(Number(x)), true),
  UINT32: (v, at, x) => v.setUint32(at, Number(x), true),
  INT32: (v, at, x) => v.setInt32(at, Number(x), true),
  FP32: (v, at, x) => v.setFloat32(at, Number(x), true),
  UINT64: (v, at, x) => v.setBigUint64(at, BigInt(Number(x)), true),
  INT64: (v, at, x) => v.setBigInt64(at, BigInt(Number(x)), true),
  FP64: (v, at, x) => v.setFloat64(at, Number(x), true),
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** A BYTES element as the string a JSON request would carry; text only, as the REST side takes. */
export function bytesElement(name: string, index: number, bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new AppError(
      'INVALID_REQUEST',
      `input '${name}' BYTES element ${index} is not valid UTF-8 (the runner's models take text)`,
    )
  }
}

function decodeBytes(name: string, raw: Uint8Array, count: number): string[] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  const out: string[] = []
  let at = 0
  while (at < raw.byteLength) {
    if (at + 4 > raw.byteLength)
      throw new AppError(
        'INVALID_REQUEST',
        `input '${name}' raw BYTES content ends inside the 4-byte length of element ${out.length}`,
      )
    const length = view.getUint32(at, true)
    at += 4
    if (at + length > raw.byteLength)
      throw new AppError(
        'INVALID_REQUEST',
        `input '${name}' raw BYTES element ${out.length} announces ${length} bytes but ${raw.byteLength - at} remain`,
      )
    out.push(bytesElement(name, out.length, raw.subarray(at, at + length)))
    at += length
    // More elements than the shape holds is refused at once, not after decoding a flood of them.
    if (out.length > count) break
  }
  if (out.length !== count)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${name}' raw BYTES content holds ${out.length > count ? 'more than ' : ''}${out.length} elements, its shape ${count}`,
    )
  return out
}

/**
 * One input's raw content → its flat element values.
 * @throws AppError INVALID_REQUEST when the size does not match the shape and datatype
 */
export function decodeRaw(
  name: string,
  datatype: Datatype,
  count: number,
  raw: Uint8Array,
): TensorValue[] {
  if (datatype === 'BYTES') return decodeBytes(name, raw, count)
  const size = ELEMENT_BYTES[datatype]
  if (raw.byteLength !== count * size)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${name}' raw content has ${raw.byteLength} bytes; ${count} ${datatype} elements take ${count * size}`,
    )
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  const read = READ[datatype]
  const out = new Array<TensorValue>(count)
  for (let i = 0; i < count; i++) out[i] = read(view, i * size)
  return out
}

/** Flat element values → raw content (the response's `raw_output_contents`). */
export function encodeRaw(datatype: Datatype, values: readonly TensorValue[]): Buffer {
  if (datatype === 'BYTES') {
    const parts = values.map((v) => Buffer.from(String(v), 'utf8'))
    const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.byteLength, 0))
    let at = 0
    for (const p of parts) {
      out.writeUInt32LE(p.byteLength, at)
      p.copy(out, at + 4)
      at += 4 + p.byteLength
    }
    return out
  }
  const size = ELEMENT_BYTES[datatype]
  const out = Buffer.alloc(values.length * size)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  const write = WRITE[datatype]
  values.forEach((x, i) => {
    write(view, i * size, x)
  })
  return out
}
