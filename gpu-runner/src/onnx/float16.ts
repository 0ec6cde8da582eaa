/**
 * IEEE 754 half precision (ONNX `FLOAT16`) in plain JS, for Node versions without `Float16Array`: float32 →
 * float16 bits with round-to-nearest-even (what numpy's `astype(float16)` and onnxruntime's Cast do), and back.
 * Used to store the twin graph's low-rank factors at half the bytes.
 * @module
 */
import type { ITensorProto } from './proto.ts'
import { TensorDataType } from './proto.ts'

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** The float16 bit pattern nearest to `value` (ties to even; overflow → ±Infinity; NaN stays NaN). */
export function toFloat16Bits(value: number): number {
  f32[0] = value
  const x = u32[0] as number
  const sign = (x >>> 16) & 0x8000
  const exp = (x >>> 23) & 0xff
  let mant = x & 0x7fffff
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0) // Inf / NaN
  const e = exp - 127 + 15 // re-biased exponent
  if (e >= 0x1f) return sign | 0x7c00 // too large: Inf
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit 1 into place, rounding to nearest even.
    if (e < -10) return sign
    mant |= 0x800000
    const shift = 14 - e
    const half = 1 << (shift - 1)
    const rest = mant & ((1 << shift) - 1)
    let h = mant >>> shift
    if (rest > half || (rest === half && (h & 1) === 1)) h++
    return sign | h
  }
  let h = (e << 10) | (mant >>> 13)
  const rest = mant & 0x1fff
  // Round to nearest even; a carry out of the mantissa correctly bumps the exponent (up to Inf).
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++
  return sign | h
}

/** The value of a float16 bit pattern. */
export function fromFloat16Bits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >>> 10) & 0x1f
  const mant = h & 0x3ff
  if (exp === 0) return sign * mant * 2 ** -24
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY
  return sign * (1 + mant / 1024) * 2 ** (exp - 15)
}

/** float32 values → float16 bit patterns. */
export function encodeFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length)
  for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(values[i] as number)
  return out
}

/** float16 bit patterns → float32 values (exact: every half is a float32). */
export function decodeFloat16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = fromFloat16Bits(bits[i] as number)
  return out
}

/** A FLOAT16 tensor holding `values` rounded to half precision, as little-endian raw data. */
export function float16Tensor(
  name: string,
  values: Float32Array,
  dims: readonly number[],
): ITensorProto {
  const bits = encodeFloat16(values)
  const raw = new Uint8Array(bits.length * 2)
  const view = new DataView(raw.buffer)
  for (let i = 0; i < bits.length; i++) view.setUint16(i * 2, bits[i] as number, true)
  return { name, dataType: TensorDataType.FLOAT16, dims: [...dims], rawData: raw }
}

/**
 * The float32 values of a FLOAT16 tensor (raw data, or `int32_data` holding one half per entry as the ONNX spec
 * allows); undefined when the tensor is not FLOAT16 or its data does not fill `count` values.
 */
export function float16TensorValues(t: ITensorProto, count: number): Float32Array | undefined {
  if (t.dataType !== TensorDataType.FLOAT16) return undefined
  const raw = t.rawData
  if (raw && raw.byteLength > 0) {
    if (raw.byteLength !== count * 2) return undefined
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
    const bits = new Uint16Array(count)
    for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true)
    return decodeFloat16(bits)
  }
  const ints = t.int32Data ?? []
  if (ints.length !== count) return undefined
  return decodeFloat16(Uint16Array.from(ints))
}
