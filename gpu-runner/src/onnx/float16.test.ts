import { describe, expect, it } from 'vitest'
import { ort } from '../runtime/ort-session.ts'
import {
  decodeFloat16,
  encodeFloat16,
  float16Tensor,
  float16TensorValues,
  fromFloat16Bits,
  toFloat16Bits,
} from './float16.ts'
import { GraphBuilder } from './graph-builder.ts'
import { TensorDataType } from './proto.ts'

describe('float16', () => {
  it('encodes known values, rounding to nearest even, overflowing to Infinity', () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [65504, 0x7bff], // largest finite half
      [65519, 0x7bff], // below the midpoint to the next (out-of-range) step
      [65520, 0x7c00], // the midpoint rounds to even: Infinity
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // halfway between 0 and 2^-24: to even (0)
      [1.5 * 2 ** -24, 0x0002], // halfway between 1 and 2 ulps: to even (2)
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // halfway between 1 and its successor: to even (1)
      [1 + 3 * 2 ** -11, 0x3c02], // halfway between odd and even: to even
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
    ]
    for (const [v, bits] of cases) expect(toFloat16Bits(v), String(v)).toBe(bits)
    expect(Number.isNaN(fromFloat16Bits(toFloat16Bits(Number.NaN)))).toBe(true)
  })

  it('decodes every half exactly: encode(decode(h)) = h for all 63,488 non-NaN bit patterns', () => {
    let checked = 0
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue // NaN payloads
      expect(toFloat16Bits(fromFloat16Bits(h))).toBe(h)
      checked++
    }
    expect(checked).toBe(0x10000 - 2 * 1023)
  })

  it('agrees bit for bit with onnxruntime’s Cast to FLOAT16 (normal, subnormal, tie and overflow values)', async () => {
    const n = 4096
    const x = new Float32Array(n)
    let s = 12345
    const rand = () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0
      return s / 2 ** 32
    }
    for (let i = 0; i < n; i++) x[i] = (rand() - 0.5) * 2 ** Math.floor(rand() * 44 - 28)
    x.set([65520, 65519, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, -0, 1e6], 0)
    const g = new GraphBuilder('cast').input('x', 'float', [n]).output('y', 'float', [n])
    const h = g.node('Cast', ['x'], { name: 'to_half', attrs: { to: TensorDataType.FLOAT16 } })
    g.node('Cast', [h], { name: 'y', outputs: ['y'], attrs: { to: TensorDataType.FLOAT } })
    const session = await ort.InferenceSession.create(g.build())
    try {
      const out = await session.run({ x: new ort.Tensor('float32', x, [n]) })
      const viaOrt = out.y?.data as Float32Array
      const ours = decodeFloat16(encodeFloat16(x))
      for (let i = 0; i < n; i++) expect(Object.is(ours[i], viaOrt[i]), `x=${x[i]}`).toBe(true)
    } finally {
      await session.release()
    }
  })

  it('round-trips through a FLOAT16 tensor proto', () => {
    const v = Float32Array.of(0.5, -1.25, 3.140625, 1e-7)
    const t = float16Tensor('w', v, [2, 2])
    expect(t.dataType).toBe(TensorDataType.FLOAT16)
    expect(t.rawData?.byteLength).toBe(8)
    expect(Array.from(float16TensorValues(t, 4) ?? [])).toEqual(
      Array.from(decodeFloat16(encodeFloat16(v))),
    )
    expect(float16TensorValues(t, 5)).toBeUndefined()
    expect(float16TensorValues({ ...t, dataType: TensorDataType.FLOAT }, 4)).toBeUndefined()
    expect(
      Array.from(
        float16TensorValues({ dataType: TensorDataType.FLOAT16, int32Data: [0x3c00, 0xc000] }, 2) ??
          [],
      ),
    ).toEqual([1, -2])
  })
})
