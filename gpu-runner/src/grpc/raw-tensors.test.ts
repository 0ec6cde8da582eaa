import { AppError, DATATYPES, type Datatype } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { decodeRaw, ELEMENT_BYTES, encodeRaw, type TensorValue } from './raw-tensors.ts'

/** Values each datatype holds exactly, extremes included. */
const SAMPLES: Record<Datatype, TensorValue[]> = {
  BOOL: [true, false, true],
  UINT8: [0, 255, 7],
  INT8: [-128, 127, 0],
  UINT16: [0, 65535, 300],
  INT16: [-32768, 32767, -1],
  FP16: [0.5, -2, 65504],
  UINT32: [0, 4294967295, 70000],
  INT32: [-2147483648, 2147483647, 5],
  FP32: [Math.fround(0.1), -3.5, Math.fround(3.4e38)],
  UINT64: [0, Number.MAX_SAFE_INTEGER, 1],
  INT64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, -1],
  FP64: [0.1, -1e300, 5e-324],
  BYTES: ['', 'héllo', 'a\u0000b'],
}

describe('raw tensor contents', () => {
  it.each(DATATYPES)('%s round-trips, little-endian, at its size', (datatype) => {
    const values = SAMPLES[datatype]
    const raw = encodeRaw(datatype, values)
    if (datatype !== 'BYTES') expect(raw.byteLength).toBe(values.length * ELEMENT_BYTES[datatype])
    expect(decodeRaw('t', datatype, values.length, raw)).toEqual(values)
  })

  it('lays elements out little-endian, as Triton does', () => {
    expect([...encodeRaw('INT32', [1, -2])]).toEqual([1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff])
    expect([...encodeRaw('FP32', [1])]).toEqual([0, 0, 0x80, 0x3f])
    expect([...encodeRaw('FP16', [1])]).toEqual([0, 0x3c])
    // BYTES: a 4-byte little-endian length before each element.
    expect([...encodeRaw('BYTES', ['ab', ''])]).toEqual([2, 0, 0, 0, 0x61, 0x62, 0, 0, 0, 0])
  })

  it('reads a slice of a larger buffer at its own offset (grpc-js hands out views)', () => {
    const whole = Buffer.concat([Buffer.from([9, 9, 9]), encodeRaw('FP32', [1.5, -2])])
    expect(decodeRaw('t', 'FP32', 2, whole.subarray(3))).toEqual([1.5, -2])
  })

  it.each([
    ['FP32', 2, Buffer.alloc(7), /raw content has 7 bytes; 2 FP32 elements take 8/],
    ['BYTES', 2, encodeRaw('BYTES', ['a']), /holds 1 elements, its shape 2/],
    ['BYTES', 1, encodeRaw('BYTES', ['a', 'b', 'c']), /holds more than 2 elements, its shape 1/],
    ['BYTES', 1, Buffer.from([5, 0, 0, 0, 0x61]), /announces 5 bytes but 1 remain/],
    ['BYTES', 1, Buffer.from([1, 0]), /ends inside the 4-byte length of element 0/],
    ['BYTES', 1, Buffer.from([1, 0, 0, 0, 0xff]), /BYTES element 0 is not valid UTF-8/],
  ] as const)(
    '%s content that does not fit its shape is INVALID_REQUEST',
    (datatype, n, raw, message) => {
      let caught: unknown
      try {
        decodeRaw('t', datatype, n, raw)
      } catch (err) {
        caught = err
      }
      expect(caught).toBeInstanceOf(AppError)
      expect((caught as AppError).code).toBe('INVALID_REQUEST')
      expect((caught as AppError).message).toMatch(message)
    },
  )
})
