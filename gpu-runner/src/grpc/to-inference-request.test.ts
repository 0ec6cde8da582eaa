import { status } from '@grpc/grpc-js'
import { AppError, ERROR_CODES, type ErrorCode } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { GRPC_STATUS_OF } from './grpc-status.ts'
import { encodeParameters } from './infer-parameters.ts'
import type { InferInputTensor, InferTensorContents, ModelInferRequest } from './messages.ts'
import { inferenceService } from './proto.ts'
import { encodeRaw } from './raw-tensors.ts'
import { toInferenceRequest } from './to-inference-request.ts'

/** A request as grpc-js hands it to the service: serialised with the proto and decoded again. */
function wire(msg: object): ModelInferRequest {
  const method = inferenceService().ModelInfer
  if (!method) throw new Error('no ModelInfer')
  return method.requestDeserialize(method.requestSerialize(msg)) as ModelInferRequest
}

function input(datatype: string, shape: number[], contents?: object): Partial<InferInputTensor> {
  return {
    name: 't',
    datatype,
    shape: shape.map(String),
    ...(contents ? { contents: contents as InferTensorContents } : {}),
  }
}

function refusal(msg: object): AppError {
  try {
    toInferenceRequest(wire(msg))
  } catch (err) {
    if (err instanceof AppError) return err
    throw err
  }
  throw new Error('expected a refusal')
}

describe('toInferenceRequest', () => {
  it.each([
    ['BOOL', { bool_contents: [true, false] }, [true, false]],
    ['INT8', { int_contents: [-128, 127] }, [-128, 127]],
    ['INT32', { int_contents: [-5, 6] }, [-5, 6]],
    ['INT64', { int64_contents: ['-9007199254740991', '3'] }, [-9007199254740991, 3]],
    ['UINT16', { uint_contents: [0, 65535] }, [0, 65535]],
    ['UINT64', { uint64_contents: ['9007199254740991', '0'] }, [9007199254740991, 0]],
    ['FP32', { fp32_contents: [0.5, -1.25] }, [0.5, -1.25]],
    ['FP64', { fp64_contents: [0.1, 1e300] }, [0.1, 1e300]],
    ['BYTES', { bytes_contents: [Buffer.from('héllo'), Buffer.from('')] }, ['héllo', '']],
  ] as [string, object, unknown[]][])(
    'takes %s typed contents from their field',
    (datatype, contents, data) => {
      const req = toInferenceRequest(wire({ inputs: [input(datatype, [2], contents)] }))
      expect(req.inputs).toEqual([{ name: 't', datatype, shape: [2], data }])
    },
  )

  it('takes raw contents of every input in order, and drops binary_data_size (it describes the encoding)', () => {
    const req = toInferenceRequest(
      wire({
        id: 'r-1',
        inputs: [
          { ...input('FP32', [1, 2]), parameters: { binary_data_size: { int64_param: '8' } } },
          input('BYTES', [1]),
        ],
        raw_input_contents: [encodeRaw('FP32', [1, 2]), encodeRaw('BYTES', ['x'])],
        outputs: [{ name: 'y' }],
      }),
    )
    expect(req).toEqual({
      id: 'r-1',
      inputs: [
        { name: 't', datatype: 'FP32', shape: [1, 2], data: [1, 2] },
        { name: 't', datatype: 'BYTES', shape: [1], data: ['x'] },
      ],
      outputs: [{ name: 'y' }],
    })
  })

  it('decodes every InferParameter kind, and experts / exclude_experts as JSON text', () => {
    const req = toInferenceRequest(
      wire({
        parameters: {
          b: { bool_param: true },
          i: { int64_param: '-3' },
          u: { uint64_param: '4' },
          d: { double_param: 0.25 },
          s: { string_param: 'shared' },
          experts: { string_param: '{"math":0.7,"code":0.3}' },
          exclude_experts: { string_param: '["math"]' },
        },
        inputs: [input('FP32', [1], { fp32_contents: [1] })],
      }),
    )
    expect(req.parameters).toEqual({
      b: true,
      i: -3,
      u: 4,
      d: 0.25,
      s: 'shared',
      experts: { math: 0.7, code: 0.3 },
      exclude_experts: ['math'],
    })
  })

  it('encodeParameters writes what decodeParameters reads', () => {
    const params = { variant: 'twin', rows: 3, weight: 0.5, ok: false, experts: { a: 1 } }
    const req = toInferenceRequest(
      wire({
        parameters: encodeParameters(params),
        inputs: [input('FP32', [1], { fp32_contents: [1] })],
      }),
    )
    expect(req.parameters).toEqual(params)
  })

  it.each([
    [
      'an int64 beyond 2^53',
      {
        parameters: { top_k: { int64_param: '9007199254740993' } },
        inputs: [input('FP32', [1], { fp32_contents: [1] })],
      },
      /parameters\.top_k: 9007199254740993 is beyond ±2\^53/,
    ],
    [
      'experts that are not JSON',
      {
        parameters: { experts: { string_param: 'math=1' } },
        inputs: [input('FP32', [1], { fp32_contents: [1] })],
      },
      /parameters\.experts: string_param must be JSON/,
    ],
    [
      'an INT64 element beyond 2^53 (as REST refuses it)',
      { inputs: [input('INT64', [1], { int64_contents: ['9007199254740993'] })] },
      /out of range for INT64/,
    ],
    [
      'FP16 as typed contents',
      { inputs: [input('FP16', [1], { fp32_contents: [1] })] },
      /FP16, which has no typed contents field: send it in raw_input_contents/,
    ],
    [
      'an input without contents',
      { inputs: [input('FP32', [1])] },
      /input 't' has no contents and the request no raw_input_contents/,
    ],
    [
      'more raw contents than inputs',
      {
        inputs: [input('FP32', [1])],
        raw_input_contents: [encodeRaw('FP32', [1]), encodeRaw('FP32', [1])],
      },
      /raw_input_contents has 2 entries for 1 inputs/,
    ],
    [
      'fewer raw contents than inputs',
      {
        inputs: [input('FP32', [1]), input('FP32', [1])],
        raw_input_contents: [encodeRaw('FP32', [1])],
      },
      /raw_input_contents has 1 entries for 2 inputs/,
    ],
    ['no inputs (as REST refuses it)', { inputs: [] }, /inputs/],
    [
      'an infinite raw FP64',
      {
        inputs: [input('FP64', [1])],
        raw_input_contents: [encodeRaw('FP64', [Number.POSITIVE_INFINITY])],
      },
      /element 0 is Infinity; expected a finite number/,
    ],
  ])('refuses %s with INVALID_REQUEST', (_what, msg, message) => {
    const e = refusal(msg)
    expect(e.code).toBe('INVALID_REQUEST')
    expect(e.message).toMatch(message)
  })
})

describe('GRPC_STATUS_OF', () => {
  it('never answers a caller mistake (4xx) with INTERNAL or UNKNOWN', () => {
    for (const [code, http] of Object.entries(ERROR_CODES) as [ErrorCode, number][])
      if (http < 500)
        expect([status.INTERNAL, status.UNKNOWN], code).not.toContain(GRPC_STATUS_OF[code])
  })

  it("maps the brief's classes", () => {
    expect(GRPC_STATUS_OF.INVALID_REQUEST).toBe(status.INVALID_ARGUMENT)
    expect(GRPC_STATUS_OF.NOT_FOUND).toBe(status.NOT_FOUND)
    expect(GRPC_STATUS_OF.RUNNER_OVERLOADED).toBe(status.UNAVAILABLE)
    expect(GRPC_STATUS_OF.RATE_LIMITED).toBe(status.RESOURCE_EXHAUSTED)
    expect(GRPC_STATUS_OF.PAYLOAD_TOO_LARGE).toBe(status.RESOURCE_EXHAUSTED)
    expect(GRPC_STATUS_OF.RUNNER_TIMEOUT).toBe(status.DEADLINE_EXCEEDED)
    expect(GRPC_STATUS_OF.UNAUTHENTICATED).toBe(status.UNAUTHENTICATED)
    expect(GRPC_STATUS_OF.INTERNAL).toBe(status.INTERNAL)
  })
})
