import { describe, expect, it } from 'vitest'
import { flattenTensorData, InferenceRequestSchema } from './inference.ts'

const input = (over: Record<string, unknown> = {}) => ({
  name: 'pixels',
  shape: [1, 4],
  datatype: 'FP32',
  data: [0, 0.5, 1, 0.25],
  ...over,
})

describe('InferenceRequestSchema', () => {
  const cases: Array<[string, unknown, boolean, RegExp?]> = [
    ['flat data', { inputs: [input()] }, true],
    ['nested data', { inputs: [input({ data: [[0, 0.5, 1, 0.25]] })] }, true],
    ['id and outputs', { id: 'r1', inputs: [input()], outputs: [{ name: 'logits' }] }, true],
    [
      'merge parameters',
      {
        parameters: { experts: { a: 0.5, b: 0.5 }, top_k: 2, exclude_experts: ['c'] },
        inputs: [input()],
      },
      true,
    ],
    ['no inputs', { inputs: [] }, false, /inputs/],
    ['shape mismatch', { inputs: [input({ shape: [2, 4] })] }, false, /8 elements\) but 4/],
    ['unknown datatype', { inputs: [input({ datatype: 'FP8' })] }, false, /datatype/],
    ['string in FP32', { inputs: [input({ data: [0, 'x', 1, 1] })] }, false, /expected a number/],
    [
      'fraction in INT32',
      { inputs: [input({ datatype: 'INT32', data: [1, 2, 3.5, 4] })] },
      false,
      /integer/,
    ],
    [
      'UINT8 overflow',
      { inputs: [input({ datatype: 'UINT8', data: [1, 2, 3, 256] })] },
      false,
      /range/,
    ],
    ['BOOL', { inputs: [input({ datatype: 'BOOL', data: [true, false, true, true] })] }, true],
    ['negative dim', { inputs: [input({ shape: [-1, 4] })] }, false, /shape/],
    ['typo field', { inputs: [input()], ouputs: [] }, false, /ouputs/],
    ['huge shape', { inputs: [input({ shape: [100000, 100000] })] }, false, /limit/],
    // Issue #16, case 1: pixel data of 1e300 or 3.5e38 became Infinity in float32, then NaN in every output.
    [
      '1e300 in FP32',
      { inputs: [input({ data: [0, 1e300, 1, 1] })] },
      false,
      /out of range for FP32/,
    ],
    ['3.5e38 in FP32', { inputs: [input({ data: [0, -3.5e38, 1, 1] })] }, false, /FP32/],
    ['float32 max in FP32', { inputs: [input({ data: [0, 3.4e38, 1, -3.4e38] })] }, true],
    ['1e300 in FP64', { inputs: [input({ datatype: 'FP64', data: [0, 1e300, 1, 1] })] }, true],
    [
      '70000 in FP16',
      { inputs: [input({ datatype: 'FP16', data: [0, 70000, 1, 1] })] },
      false,
      /out of range for FP16/,
    ],
  ]
  for (const [name, body, ok, msg] of cases) {
    it(name, () => {
      const r = InferenceRequestSchema.safeParse(body)
      expect(r.success).toBe(ok)
      if (!r.success && msg) expect(JSON.stringify(r.error.issues)).toMatch(msg)
    })
  }

  it('flattens nested data row-major', () => {
    expect(flattenTensorData([[[1, 2], [3]], [4]])).toEqual([1, 2, 3, 4])
  })
})
