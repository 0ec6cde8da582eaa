import { AppError, type RequestInput, type TensorMetadata } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { fromFloat16Bits, toFloat16Bits } from '../onnx/float16.ts'
import { ort } from '../runtime/ort-session.ts'
import { concatRows, decodeInputs, sliceRows, toHostData } from './tensors.ts'

const declared: TensorMetadata[] = [
  { name: 'ids', datatype: 'INT64', shape: [-1, -1] },
  { name: 'feat', datatype: 'FP32', shape: [-1, 2] },
]

function input(name: string, datatype: RequestInput['datatype'], shape: number[], data: unknown[]) {
  return { name, datatype, shape, data } as RequestInput
}

function problem(f: () => unknown): string {
  try {
    f()
  } catch (e) {
    expect(e).toBeInstanceOf(AppError)
    expect((e as AppError).code).toBe('INVALID_REQUEST')
    return (e as AppError).message
  }
  throw new Error('expected an error')
}

describe('decodeInputs', () => {
  it('converts inputs in declared order and counts rows', () => {
    const { tensors, rows } = decodeInputs(
      [
        input(
          'feat',
          'FP32',
          [2, 2],
          [
            [1, 2],
            [3, 4],
          ],
        ),
        input('ids', 'INT64', [2, 3], [1, 2, 3, 4, 5, 6]),
      ],
      declared,
    )
    expect(rows).toBe(2)
    expect(tensors.map((t) => t.name)).toEqual(['ids', 'feat'])
    expect(tensors[0]?.data).toEqual(BigInt64Array.from([1n, 2n, 3n, 4n, 5n, 6n]))
    expect(tensors[1]?.data).toEqual(Float32Array.from([1, 2, 3, 4]))
  })

  it('names the problem for each caller mistake', () => {
    const feat = input('feat', 'FP32', [1, 2], [1, 2])
    const ids = input('ids', 'INT64', [1, 1], [7])
    expect(problem(() => decodeInputs([feat], declared))).toMatch(/missing input 'ids'/)
    expect(
      problem(() => decodeInputs([feat, ids, input('x', 'FP32', [1], [1])], declared)),
    ).toMatch(/unknown input 'x'; the model expects ids INT64 \[-1,-1\]; feat FP32 \[-1,2\]/)
    expect(problem(() => decodeInputs([feat, ids, ids], declared))).toMatch(/'ids' is given twice/)
    expect(
      problem(() => decodeInputs([input('feat', 'FP64', [1, 2], [1, 2]), ids], declared)),
    ).toMatch(/'feat' has datatype FP64, the model expects FP32/)
    expect(
      problem(() => decodeInputs([input('feat', 'FP32', [1, 3], [1, 2, 3]), ids], declared)),
    ).toMatch(/'feat' has shape \[1,3\], the model expects \[-1,2\]/)
    expect(
      problem(() => decodeInputs([input('feat', 'FP32', [2], [1, 2]), ids], declared)),
    ).toMatch(/shape \[2\]/)
    expect(
      problem(() => decodeInputs([input('feat', 'FP32', [2, 2], [1, 2, 3, 4]), ids], declared)),
    ).toMatch(/disagree on the batch size/)
    expect(
      problem(() => decodeInputs([feat, input('ids', 'INT64', [1, 0], [])], declared)),
    ).toMatch(/empty dimension 1/)
  })
})

describe('batching helpers', () => {
  it('concatenate rows and slice them back', () => {
    const a = decodeInputs(
      [input('feat', 'FP32', [1, 2], [1, 2]), input('ids', 'INT64', [1, 1], [1])],
      declared,
    )
    const b = decodeInputs(
      [input('feat', 'FP32', [2, 2], [3, 4, 5, 6]), input('ids', 'INT64', [2, 1], [2, 3])],
      declared,
    )
    const feat = concatRows([a.tensors[1], b.tensors[1]].filter((t) => t !== undefined))
    expect(feat.dims).toEqual([3, 2])
    expect(Array.from(feat.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6])
    expect(sliceRows('feat', feat, 1, 3)).toEqual({
      name: 'feat',
      datatype: 'FP32',
      shape: [2, 2],
      data: [3, 4, 5, 6],
    })
    const ids = concatRows([a.tensors[0], b.tensors[0]].filter((t) => t !== undefined))
    expect(sliceRows('ids', ids, 0, 1)).toEqual({
      name: 'ids',
      datatype: 'INT64',
      shape: [1, 1],
      data: [1],
    })
    const flags = new ort.Tensor('bool', Uint8Array.from([1, 0]), [2])
    expect(sliceRows('f', flags, 0, 2).data).toEqual([true, false])
  })

  it('round-trips FP16 values exactly where they are representable', () => {
    for (const v of [0, 1, -2, 0.5, 65504, 2 ** -24, -0.333251953125])
      expect(fromFloat16Bits(toFloat16Bits(v))).toBe(v)
    expect(fromFloat16Bits(toFloat16Bits(1 / 3))).toBeCloseTo(1 / 3, 3)
    expect(fromFloat16Bits(toFloat16Bits(1e6))).toBe(Number.POSITIVE_INFINITY)
    expect(toHostData('BOOL', [true, false])).toEqual(Uint8Array.from([1, 0]))
    expect(toHostData('BYTES', ['a', 'b'])).toEqual(['a', 'b'])
  })
})
