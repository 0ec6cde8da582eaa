/**
 * KServe's gRPC inference service on a real runner (startRunner, real onnxruntime sessions over the committed demo
 * package `fashion-twin` and a generated `tiny-twin`), called over a real @grpc/grpc-js channel on loopback, side
 * by side with the same runner's REST answers (issue #15).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { status } from '@grpc/grpc-js'
import { type InferenceResponse, InferenceResponseSchema } from '@twinserve/shared'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { InferenceTestClient } from '../../test-support/grpc-client.ts'
import { RunnerConfigSchema } from '../config.ts'
import { mergeTensor } from '../merge/merge-tensor.ts'
import { createLogger } from '../server/logger.ts'
import { type Runner, startRunner } from '../server/runner.ts'
import { ERROR_CODE_KEY } from './grpc-status.ts'
import type { ModelInferRequest, ModelInferResponse } from './messages.ts'
import { inferenceService, type RpcName } from './proto.ts'
import { decodeRaw, encodeRaw } from './raw-tensors.ts'

const DEMO_PACKAGE = join(import.meta.dirname, '../../../zoo/fashion/package')
const FIXTURES = join(import.meta.dirname, '../../../test/fixtures/v2-clients/grpc')

const root = await mkdtemp(join(tmpdir(), 'twinserve-grpc-'))
const logs: Record<string, unknown>[] = []
let runner: Runner
let client: InferenceTestClient

beforeAll(async () => {
  const tiny = join(root, 'tiny')
  await writeTwinFixture(tiny)
  const config = RunnerConfigSchema.parse({
    packages: [DEMO_PACKAGE, tiny],
    port: 0,
    grpcPort: 0,
    insecureLocal: true,
    provider: 'cpu',
    threads: 1,
  })
  const logger = createLogger({ level: 'debug', sink: (l) => logs.push(JSON.parse(l)) })
  runner = await startRunner(config, { logger, merge: mergeTensor })
  client = new InferenceTestClient(`127.0.0.1:${runner.grpcPort}`)
})
afterAll(async () => {
  client?.close()
  await runner?.shutdown('test done')
  await rm(root, { recursive: true, force: true })
})

/** The same runner's REST answer (unsigned: --insecure-local). */
async function rest(model: string, body: unknown): Promise<InferenceResponse> {
  const res = await fetch(`${runner.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  expect(res.status, await res.clone().text()).toBe(200)
  return InferenceResponseSchema.parse(await res.json())
}

/** A gRPC answer's outputs as REST writes them: name, datatype, shape, flat data. */
function outputsOf(res: ModelInferResponse) {
  return res.outputs.map((o, i) => {
    const shape = o.shape.map(Number)
    const raw = res.raw_output_contents[i] ?? Buffer.alloc(0)
    const data = decodeRaw(
      o.name,
      o.datatype as 'FP32',
      shape.reduce((a, b) => a * b, 1),
      raw,
    )
    return { name: o.name, datatype: o.datatype, shape, data }
  })
}

async function infer(message: Partial<ModelInferRequest> & object) {
  return client.call<ModelInferResponse>('ModelInfer', message)
}

function pixels(seed: number): number[] {
  return Array.from({ length: 784 }, (_, i) => ((i * 37 + seed * 11) % 256) / 255)
}

describe('ModelInfer', () => {
  it('raw_input_contents returns the same logits as the REST infer for the same tensor', async () => {
    const x = [...pixels(1), ...pixels(2)]
    const answer = await infer({
      model_name: 'fashion-twin',
      id: 'same-1',
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [2, 784] } as never],
      raw_input_contents: [encodeRaw('FP32', x)],
    })
    expect(answer.error).toBeNull()
    const res = answer.response as ModelInferResponse
    const viaRest = await rest('fashion-twin', {
      id: 'same-1',
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [2, 784], data: x }],
    })
    expect(res.model_name).toBe('fashion-twin')
    expect(res.id).toBe('same-1')
    expect(outputsOf(res)).toEqual(viaRest.outputs.map(({ parameters: _, ...o }) => o))
    expect(outputsOf(res).find((o) => o.name === 'logits')?.shape).toEqual([2, 10])
    // The response parameters REST puts in its JSON, as InferParameters.
    expect(res.parameters).toMatchObject({
      variant: { string_param: 'twin' },
      merge_path: { string_param: 'factored' },
      provider: { string_param: 'cpu' },
    })
  })

  it('typed contents (fp32_contents) answer as raw contents do', async () => {
    const x = pixels(3)
    const typed = await infer({
      model_name: 'fashion-twin',
      inputs: [
        {
          name: 'pixels',
          datatype: 'FP32',
          shape: [1, 784],
          contents: { fp32_contents: x },
        } as never,
      ],
    })
    const raw = await infer({
      model_name: 'fashion-twin',
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] } as never],
      raw_input_contents: [encodeRaw('FP32', x)],
    })
    expect(typed.error).toBeNull()
    expect(outputsOf(typed.response as ModelInferResponse)).toEqual(
      outputsOf(raw.response as ModelInferResponse),
    )
  })

  it('merge controls travel in parameters, structured ones as JSON text, and change the answer as over REST', async () => {
    const x = pixels(4)
    const experts = { inverted: 0.25, rotated: 0.75 }
    const answer = await infer({
      model_name: 'fashion-twin',
      parameters: { experts: { string_param: JSON.stringify(experts) } } as never,
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] } as never],
      raw_input_contents: [encodeRaw('FP32', x)],
      outputs: [{ name: 'logits' } as never],
    })
    expect(answer.error).toBeNull()
    const viaRest = await rest('fashion-twin', {
      parameters: { experts },
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784], data: x }],
      outputs: [{ name: 'logits' }],
    })
    const routed = await rest('fashion-twin', {
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784], data: x }],
      outputs: [{ name: 'logits' }],
    })
    const got = outputsOf(answer.response as ModelInferResponse)
    expect(got).toEqual(viaRest.outputs.map(({ parameters: _, ...o }) => o))
    expect(got[0]?.data).not.toEqual(routed.outputs[0]?.data)

    const topK = await infer({
      model_name: 'fashion-twin',
      parameters: { top_k: { int64_param: '1' } } as never,
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] } as never],
      raw_input_contents: [encodeRaw('FP32', x)],
      outputs: [{ name: 'logits' } as never],
    })
    const topKRest = await rest('fashion-twin', {
      parameters: { top_k: 1 },
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784], data: x }],
      outputs: [{ name: 'logits' }],
    })
    expect(outputsOf(topK.response as ModelInferResponse)).toEqual(
      topKRest.outputs.map(({ parameters: _, ...o }) => o),
    )
  })

  it('an unknown model is NOT_FOUND, with the shared code and the request id in the trailers', async () => {
    const answer = await infer({
      model_name: 'no-such-model',
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] } as never],
      raw_input_contents: [encodeRaw('FP32', pixels(1))],
    })
    expect(answer.error?.code).toBe(status.NOT_FOUND)
    expect(answer.error?.details).toMatch(
      /model 'no-such-model' is not served here; models: fashion-twin, tiny-twin/,
    )
    expect(answer.error?.metadata.get(ERROR_CODE_KEY)).toEqual(['NOT_FOUND'])
    expect(answer.error?.metadata.get('x-request-id')[0]).toEqual(expect.any(String))
  })

  it.each([
    [
      'a shape the model does not take',
      {
        inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 783] }],
        raw: [encodeRaw('FP32', pixels(1).slice(0, 783))],
      },
      /input 'pixels' has shape \[1,783\], the model expects \[-1,784\]/,
    ],
    [
      'raw content of the wrong size for its shape',
      {
        inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] }],
        raw: [encodeRaw('FP32', pixels(1).slice(0, 10))],
      },
      /input 'pixels' raw content has 40 bytes; 784 FP32 elements take 3136/,
    ],
    [
      'typed contents of the wrong length (the REST schema message)',
      {
        inputs: [
          {
            name: 'pixels',
            datatype: 'FP32',
            shape: [1, 784],
            contents: { fp32_contents: [1, 2] },
          },
        ],
      },
      /tensor 'pixels' has shape \[1,784\] \(784 elements\) but 2 data values/,
    ],
    [
      'a negative dimension',
      {
        inputs: [{ name: 'pixels', datatype: 'FP32', shape: [-1, 784] }],
        raw: [encodeRaw('FP32', pixels(1))],
      },
      /inputs\.0\.shape\.0: -1 is not a dimension/,
    ],
    [
      'a non-finite element, refused as REST refuses it',
      {
        inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] }],
        raw: [encodeRaw('FP32', [Number.NaN, ...pixels(1).slice(1)])],
      },
      /inputs\.0\.data\.0: tensor 'pixels' element 0 is NaN; expected a finite number/,
    ],
    [
      'both raw and typed contents',
      {
        inputs: [
          {
            name: 'pixels',
            datatype: 'FP32',
            shape: [1, 784],
            contents: { fp32_contents: pixels(1) },
          },
        ],
        raw: [encodeRaw('FP32', pixels(1))],
      },
      /has typed contents but the request carries raw_input_contents/,
    ],
    [
      "elements in another datatype's field",
      {
        inputs: [
          { name: 'pixels', datatype: 'FP32', shape: [1, 784], contents: { int_contents: [1] } },
        ],
      },
      /its elements go in contents\.fp32_contents, not contents\.int_contents/,
    ],
    [
      'an unknown merge control',
      {
        inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] }],
        raw: [encodeRaw('FP32', pixels(1))],
        parameters: { topk: { int64_param: '1' } },
      },
      /unknown merge control 'topk'/,
    ],
    [
      'an unknown datatype',
      {
        inputs: [{ name: 'pixels', datatype: 'BF16', shape: [1, 784] }],
        raw: [Buffer.alloc(1568)],
      },
      /inputs\.0\.datatype: 'BF16' is not one of/,
    ],
  ])('%s is INVALID_ARGUMENT with the reason', async (_what, req, message) => {
    const { raw, ...rest } = req as { raw?: Buffer[] } & Record<string, unknown>
    const answer = await infer({
      model_name: 'fashion-twin',
      ...rest,
      ...(raw ? { raw_input_contents: raw } : {}),
    })
    expect(answer.error?.code, answer.error?.details).toBe(status.INVALID_ARGUMENT)
    expect(answer.error?.details).toMatch(message)
    expect(answer.error?.metadata.get(ERROR_CODE_KEY)).toEqual(['INVALID_REQUEST'])
  })

  it('an unknown model version is NOT_FOUND (models here are unversioned)', async () => {
    const answer = await infer({
      model_name: 'fashion-twin',
      model_version: '7',
      inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] } as never],
      raw_input_contents: [encodeRaw('FP32', pixels(1))],
    })
    expect(answer.error?.code).toBe(status.NOT_FOUND)
    expect(answer.error?.details).toMatch(/model 'fashion-twin' has no version '7'/)
  })

  it("logs one infer line per call, marked grpc, with the caller's request id", async () => {
    const { Metadata } = await import('@grpc/grpc-js')
    const metadata = new Metadata()
    metadata.set('x-request-id', 'grpc-log-1')
    const answer = await client.call<ModelInferResponse>(
      'ModelInfer',
      {
        model_name: 'fashion-twin',
        inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1, 784] }],
        raw_input_contents: [encodeRaw('FP32', pixels(5))],
      },
      { metadata },
    )
    expect(answer.error).toBeNull()
    expect(answer.headers?.get('x-request-id')).toEqual(['grpc-log-1'])
    const lines = logs.filter((l) => l.request_id === 'grpc-log-1')
    expect(lines).toEqual([
      expect.objectContaining({
        msg: 'infer',
        protocol: 'grpc',
        model: 'fashion-twin',
        status: 200,
      }),
    ])
  })
})

describe('limits', () => {
  it('a message over --max-body-bytes is RESOURCE_EXHAUSTED, before it is decoded', async () => {
    const small = await startRunner(
      RunnerConfigSchema.parse({
        packages: [join(root, 'tiny')],
        port: 0,
        grpcPort: 0,
        insecureLocal: true,
        provider: 'cpu',
        threads: 1,
        maxBodyBytes: 4096,
      }),
      { logger: createLogger({ level: 'error', sink: () => undefined }) },
    )
    const c = new InferenceTestClient(`127.0.0.1:${small.grpcPort}`)
    try {
      const message = (rows: number) => ({
        model_name: 'tiny-twin',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [rows, 6] }],
        raw_input_contents: [encodeRaw('FP32', Array<number>(rows * 6).fill(0.5))],
      })
      expect((await c.call('ModelInfer', message(100))).error).toBeNull()
      const over = await c.call('ModelInfer', message(200))
      expect(over.error?.code).toBe(status.RESOURCE_EXHAUSTED)
    } finally {
      c.close()
      await small.shutdown('test done')
    }
  })
})

describe('health and metadata', () => {
  it('ServerLive, ServerReady, ServerMetadata', async () => {
    expect((await client.call('ServerLive', {})).response).toEqual({ live: true })
    expect((await client.call('ServerReady', {})).response).toEqual({ ready: true })
    const meta = await client.call('ServerMetadata', {})
    const viaRest = (await (await fetch(`${runner.url}/v2`)).json()) as Record<string, unknown>
    expect(meta.response).toEqual({
      name: viaRest.name,
      version: viaRest.version,
      extensions: viaRest.extensions,
    })
  })

  it('ModelReady and ModelMetadata answer as REST does; an unknown model is NOT_FOUND', async () => {
    expect((await client.call('ModelReady', { name: 'fashion-twin' })).response).toEqual({
      ready: true,
    })
    const meta = await client.call<Record<string, unknown>>('ModelMetadata', {
      name: 'fashion-twin',
    })
    const viaRest = (await (await fetch(`${runner.url}/v2/models/fashion-twin`)).json()) as Record<
      string,
      unknown
    >
    expect(meta.response).toEqual({
      name: 'fashion-twin',
      versions: viaRest.versions ?? [],
      platform: viaRest.platform,
      // int64 dimensions come back as decimal strings (proto-loader's longs: String).
      inputs: (viaRest.inputs as { shape: number[] }[]).map((t) => ({
        ...t,
        shape: t.shape.map(String),
      })),
      outputs: (viaRest.outputs as { shape: number[] }[]).map((t) => ({
        ...t,
        shape: t.shape.map(String),
      })),
    })
    for (const rpc of ['ModelReady', 'ModelMetadata'] as const) {
      const missing = await client.call(rpc, { name: 'nope' })
      expect(missing.error?.code).toBe(status.NOT_FOUND)
    }
  })

  it('RepositoryModelLoad is UNIMPLEMENTED', async () => {
    const method = inferenceService().RepositoryModelLoad
    expect(method).toBeDefined()
    const answer = await client.send('RepositoryModelLoad' as RpcName, Buffer.alloc(0))
    expect(answer.error?.code).toBe(status.UNIMPLEMENTED)
  })
})

interface FixtureRecord {
  scenario: string
  request: { method: string; bodyFile: string; message: Record<string, unknown> }
  response: { message: Record<string, unknown> }
}

describe('the recorded client calls (test/fixtures/v2-clients/grpc), replayed byte for byte', async () => {
  const names = (await readdir(FIXTURES)).filter((f) => f.endsWith('.json'))
  it('covers every recording', () => {
    expect(names.length).toBeGreaterThanOrEqual(8)
  })

  it.each(names)('%s', async (file) => {
    const record = JSON.parse(await readFile(join(FIXTURES, file), 'utf8')) as FixtureRecord
    const rpc = record.request.method.split('/').pop() as RpcName
    const method = inferenceService()[rpc]
    expect(method?.path).toBe(record.request.method)
    const body = await readFile(join(FIXTURES, record.request.bodyFile)).catch(() =>
      Buffer.alloc(0),
    )
    let bytes: Buffer = body
    const expected = record.response.message
    if (rpc === 'ModelInfer') {
      const msg = method?.requestDeserialize(body) as ModelInferRequest
      // The recordings name version "1"; the package's version id replaces it (fixtures README).
      if (msg.model_version !== '') {
        msg.model_version = runner.models.get(msg.model_name)?.version ?? ''
        bytes = method?.requestSerialize(msg) as Buffer
      }
      const answer = await client.send<ModelInferResponse>(rpc, bytes)
      expect(answer.error, answer.error?.details).toBeNull()
      const res = answer.response as ModelInferResponse
      // The right numbers: the same runner's REST answer for the same tensors.
      const viaRest = await rest(msg.model_name, {
        ...(msg.id ? { id: msg.id } : {}),
        inputs: msg.inputs.map((t, i) => {
          const shape = t.shape.map(Number)
          const raw = msg.raw_input_contents[i] ?? Buffer.alloc(0)
          return {
            name: t.name,
            datatype: t.datatype,
            shape,
            data: decodeRaw(
              t.name,
              'FP32',
              shape.reduce((a, b) => a * b, 1),
              raw,
            ),
          }
        }),
        ...(msg.outputs.length ? { outputs: msg.outputs.map((o) => ({ name: o.name })) } : {}),
      })
      expect(outputsOf(res)).toEqual(viaRest.outputs.map(({ parameters: _, ...o }) => o))
      // The shape of the answer the client was seen to accept: names, datatypes, shapes, id.
      expect(res.model_name).toBe(expected.model_name)
      expect(res.id).toBe(expected.id ?? '')
      expect(res.outputs.map(({ name, datatype, shape }) => ({ name, datatype, shape }))).toEqual(
        expected.outputs,
      )
      expect(res.raw_output_contents.map((b) => b.byteLength)).toEqual(
        (expected.raw_output_contents as string[]).map((b) => Buffer.from(b, 'base64').byteLength),
      )
      return
    }
    const answer = await client.send(rpc, bytes)
    expect(answer.error, answer.error?.details).toBeNull()
    if (rpc === 'ServerMetadata')
      expect(answer.response).toEqual({
        name: expected.name,
        version: expected.version,
        extensions: expect.any(Array),
      })
    else if (rpc === 'ModelMetadata')
      // The recording names version "1"; the package's version id stands in its place.
      expect(answer.response).toEqual({
        ...expected,
        versions: [runner.models.get(expected.name as string)?.version],
      })
    else expect(answer.response).toEqual(expected)
  })
})
