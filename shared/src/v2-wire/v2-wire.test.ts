import { describe, expect, it } from 'vitest'
import { AppError } from '../errors.ts'
import { decodeTensorBytes, encodeTensorBytes } from './binary-tensors.ts'
import {
  compressBody,
  decompressBody,
  requestEncoding,
  responseEncoding,
} from './content-encoding.ts'
import { inferHeaderLength, parseInferBody } from './infer-body.ts'
import { checkInferResponseBody, encodeInferResponse } from './infer-response-body.ts'
import { splitRequestParameters } from './protocol-parameters.ts'

const enc = new TextEncoder()
const headers = (h: Record<string, string>) => new Headers(h)

/** A binary body: JSON header, then each tensor's bytes. */
function binaryBody(
  header: unknown,
  ...tensors: Uint8Array[]
): { body: Uint8Array; length: number } {
  const h = enc.encode(JSON.stringify(header))
  const body = new Uint8Array(h.byteLength + tensors.reduce((a, t) => a + t.byteLength, 0))
  body.set(h)
  let at = h.byteLength
  for (const t of tensors) {
    body.set(t, at)
    at += t.byteLength
  }
  return { body, length: h.byteLength }
}

function expectCode(fn: () => unknown, code: string, message: RegExp) {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).code).toBe(code)
    expect((err as AppError).message).toMatch(message)
    return
  }
  throw new Error('expected a throw')
}

describe('binary tensors', () => {
  it('round-trips every datatype as little-endian bytes', () => {
    const cases: [Parameters<typeof encodeTensorBytes>[0], (number | boolean | string)[]][] = [
      ['FP32', [1.5, -2.25, 0]],
      ['FP64', [Math.PI, -1e300]],
      ['FP16', [1, -0.5, 65504, 0.0001220703125]],
      ['INT64', [-(2 ** 53) + 1, 42]],
      ['UINT64', [2 ** 53 - 1]],
      ['INT32', [-2147483648, 7]],
      ['INT8', [-128, 127]],
      ['UINT8', [0, 255]],
      ['INT16', [-32768]],
      ['UINT16', [65535]],
      ['UINT32', [4294967295]],
      ['BOOL', [true, false]],
      ['BYTES', ['café', '', 'two words']],
    ]
    for (const [dt, values] of cases) {
      const bytes = encodeTensorBytes(dt, values)
      expect(decodeTensorBytes(dt, bytes, values.length, dt), dt).toEqual(values)
    }
    // Wire layout: FP32 1.5 is 00 00 c0 3f; BYTES 'ab' is 02 00 00 00 61 62.
    expect([...encodeTensorBytes('FP32', [1.5])]).toEqual([0, 0, 0xc0, 0x3f])
    expect([...encodeTensorBytes('BYTES', ['ab'])]).toEqual([2, 0, 0, 0, 0x61, 0x62])
  })

  it('refuses byte counts that do not fit the shape, non-UTF-8 BYTES and 64-bit values past 2^53', () => {
    expectCode(
      () => decodeTensorBytes('FP32', new Uint8Array(10), 3, "inputs[0] 'x'"),
      'INVALID_REQUEST',
      /inputs\[0\] 'x': 10 bytes where 3 FP32 values take 12/,
    )
    expectCode(
      () => decodeTensorBytes('BYTES', new Uint8Array([2, 0, 0, 0, 0xff, 0xfe]), 1, 't'),
      'INVALID_REQUEST',
      /not UTF-8/,
    )
    expectCode(
      () => decodeTensorBytes('BYTES', new Uint8Array([9, 0, 0, 0, 0x61]), 1, 't'),
      'INVALID_REQUEST',
      /runs past/,
    )
    const big = new Uint8Array(8)
    new DataView(big.buffer).setBigInt64(0, 2n ** 60n, true)
    expectCode(() => decodeTensorBytes('INT64', big, 1, 'ids'), 'INVALID_REQUEST', /2\^53/)
  })
})

describe('infer request bodies', () => {
  const pixels = encodeTensorBytes('FP32', [0.5, 1, -1, 2])
  const header = {
    id: 'r1',
    model_name: 'm',
    inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }],
    parameters: { binary_data_output: true, top_k: 2 },
  }

  it('decides JSON or binary by Inference-Header-Content-Length, whatever the Content-Type', () => {
    expect(inferHeaderLength(headers({}))).toBeUndefined()
    expect(
      inferHeaderLength(headers({ 'content-type': 'application/octet-stream' })),
    ).toBeUndefined()
    expect(
      inferHeaderLength(headers({ 'content-type': 'application/json; charset=utf-8' })),
    ).toBeUndefined()
    expect(inferHeaderLength(headers({ 'Inference-Header-Content-Length': '144' }))).toBe(144)
    expectCode(
      () => inferHeaderLength(headers({ 'content-type': 'text/plain' })),
      'UNSUPPORTED_MEDIA_TYPE',
      /got 'text\/plain'/,
    )
    expectCode(
      () => inferHeaderLength(headers({ 'inference-header-content-length': '-1' })),
      'INVALID_REQUEST',
      /byte count/,
    )
  })

  it('moves binary inputs into data (decode) or only checks their sizes (check)', () => {
    const { body, length } = binaryBody(header, pixels)
    const decoded = parseInferBody(body, length, 'decode')
    expect(decoded.binary).toBe(true)
    expect(decoded.request.inputs[0]?.data).toEqual([0.5, 1, -1, 2])
    expect(decoded.request.model_name).toBe('m')
    const checked = parseInferBody(body, length, 'check')
    expect(checked.request.inputs[0]?.data).toEqual([])
    expect(checked.headerText).toBe(JSON.stringify(header))
  })

  it('names what is wrong with a binary body', () => {
    const short = binaryBody(header, pixels.subarray(0, 12))
    expectCode(
      () => parseInferBody(short.body, short.length, 'check'),
      'INVALID_REQUEST',
      /binary_data_size 16 runs past the body \(12 tensor bytes left/,
    )
    const extra = binaryBody(header, pixels, new Uint8Array(3))
    expectCode(
      () => parseInferBody(extra.body, extra.length, 'decode'),
      'INVALID_REQUEST',
      /3 bytes after the last binary input/,
    )
    const wrongShape = binaryBody(
      { ...header, inputs: [{ ...header.inputs[0], shape: [1, 3] }] },
      pixels,
    )
    expectCode(
      () => parseInferBody(wrongShape.body, wrongShape.length, 'check'),
      'INVALID_REQUEST',
      /16 bytes where 3 FP32 values take 12/,
    )
    const { body } = binaryBody(header, pixels)
    expectCode(
      () => parseInferBody(body, undefined, 'decode'),
      'INVALID_REQUEST',
      /Inference-Header-Content-Length/,
    )
    expectCode(
      () => parseInferBody(body, body.byteLength + 1, 'decode'),
      'INVALID_REQUEST',
      /only \d+ bytes/,
    )
    const typo = binaryBody(
      {
        ...header,
        inputs: [{ ...header.inputs[0], parameters: { binary_data_size: 16, binary_size: 1 } }],
      },
      pixels,
    )
    expectCode(
      () => parseInferBody(typo.body, typo.length, 'decode'),
      'INVALID_REQUEST',
      /binary_size/,
    )
  })

  it('keeps unknown keys a 400 and decoded values under the same element checks as JSON', () => {
    const json = enc.encode(JSON.stringify({ inputs: [], modelname: 'm' }))
    expectCode(() => parseInferBody(json, undefined, 'decode'), 'INVALID_REQUEST', /modelname/)
    const inf = binaryBody(
      {
        inputs: [{ name: 'x', shape: [1], datatype: 'FP32', parameters: { binary_data_size: 4 } }],
      },
      encodeTensorBytes('FP32', [Number.POSITIVE_INFINITY]),
    )
    expectCode(
      () => parseInferBody(inf.body, inf.length, 'decode'),
      'INVALID_REQUEST',
      /inputs\[0\] 'x': element 0 is Infinity; inputs must be finite/,
    )
  })
})

describe('protocol parameters', () => {
  it('splits the protocol keys from merge controls, typed, and refuses sequence batching', () => {
    expect(splitRequestParameters({ binary_data_output: true, top_k: 2, timeout: 5000 })).toEqual({
      protocol: { binary_data_output: true, timeout: 5000 },
      controls: { top_k: 2 },
    })
    expectCode(
      () => splitRequestParameters({ binary_data_output: 'yes' }),
      'INVALID_REQUEST',
      /parameters\.binary_data_output/,
    )
    expectCode(() => splitRequestParameters({ sequence_id: 7 }), 'INVALID_REQUEST', /stateless/)
  })
})

describe('content encoding', () => {
  it('inflates gzip and deflate requests, refuses other codings and bombs', async () => {
    const text = enc.encode('{"inputs":[]}')
    expect(await decompressBody(await compressBody(text, 'gzip'), 'gzip', 1000)).toEqual(text)
    expect(await decompressBody(await compressBody(text, 'deflate'), 'deflate', 1000)).toEqual(text)
    expect(requestEncoding('gzip')).toBe('gzip')
    expect(requestEncoding(undefined)).toBeUndefined()
    expectCode(() => requestEncoding('br'), 'UNSUPPORTED_MEDIA_TYPE', /'br' is not supported/)
    const bomb = await compressBody(new Uint8Array(1 << 20), 'gzip')
    await expect(decompressBody(bomb, 'gzip', 4096)).rejects.toMatchObject({
      code: 'PAYLOAD_TOO_LARGE',
    })
    await expect(decompressBody(enc.encode('not gzip'), 'gzip', 4096)).rejects.toMatchObject({
      code: 'INVALID_REQUEST',
    })
  })

  it('answers gzip or deflate only, as the Accept-Encoding the clients send allows', () => {
    expect(responseEncoding(undefined)).toBeUndefined() // tritonclient sync
    expect(responseEncoding('gzip, deflate')).toBe('gzip') // aiohttp
    expect(responseEncoding('gzip, deflate, br')).toBe('gzip') // httpx, newer aiohttp
    expect(responseEncoding('br')).toBeUndefined()
    expect(responseEncoding('deflate')).toBe('deflate')
    expect(responseEncoding('gzip;q=0, deflate')).toBe('deflate')
    expect(responseEncoding('identity')).toBeUndefined()
  })
})

describe('infer answers', () => {
  const response = {
    model_name: 'm',
    outputs: [
      { name: 'y', datatype: 'FP32' as const, shape: [1, 2], data: [1, 2] },
      { name: 'label', datatype: 'INT64' as const, shape: [1], data: [1] },
    ],
  }
  it('puts the outputs asked for as binary after the JSON header, and checks such an answer', () => {
    const plain = encodeInferResponse(response, new Set())
    expect(plain.headerLength).toBeUndefined()
    const mixed = encodeInferResponse(response, new Set(['y']))
    expect(mixed.contentType).toBe('application/octet-stream')
    const header = JSON.parse(new TextDecoder().decode(mixed.body.subarray(0, mixed.headerLength)))
    expect(header.outputs[0]).toEqual({
      name: 'y',
      datatype: 'FP32',
      shape: [1, 2],
      parameters: { binary_data_size: 8 },
    })
    expect(header.outputs[1].data).toEqual([1])
    expect(checkInferResponseBody(mixed.body, mixed.headerLength).outputs).toHaveLength(2)
    expect(() =>
      checkInferResponseBody(mixed.body.subarray(0, mixed.body.byteLength - 1), mixed.headerLength),
    ).toThrow(/declare 8 bytes but 7 follow/)
  })
})
