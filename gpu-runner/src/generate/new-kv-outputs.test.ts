/**
 * exposeNewKv on the LM zoo's real graphs (issue 14, speed): the added outputs are exactly the new positions of
 * `present`, nothing else in the graph changes, and the engine driving the rewritten graph (and the graph as the
 * runner opens it, decoderAsServed) decodes what PyTorch does and what the unrewritten twin graph does, with
 * mixes and rows joining and leaving.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { onnx, TensorDataType } from '../onnx/proto.ts'
import { loadPackage } from '../package/load-package.ts'
import { openSession, ort } from '../runtime/ort-session.ts'
import { checkContract } from '../twin-contract/check-contract.ts'
import { encodeControls } from '../twin-contract/encode-controls.ts'
import { decoderAsServed } from './decoder-as-served.ts'
import { DecoderGraph } from './decoder-graph.ts'
import { GenerationEngine, type GenerationEvent } from './engine.ts'
import { addNewKvOutputs, exposeNewKv, newKvOutput, withoutNewKv } from './new-kv-outputs.ts'

const LM = join(import.meta.dirname, '../../../zoo/lm')
const fixture = JSON.parse(readFileSync(join(LM, 'fixtures/generation.json'), 'utf8')) as {
  maxNewTokens: number
  prompts: { ids: number[] }[]
  models: Record<string, { prompt: number; greedyIds: number[] }[]>
}
const OPTIONS = {
  maxContext: 256,
  maxSequences: 16,
  maxBytes: 64 * 1024 * 1024,
  prefillTokensPerStep: 24,
}

const rewritten = (bytes: Uint8Array): Uint8Array => {
  const out = exposeNewKv(bytes)
  if (!out) throw new Error('exposeNewKv found no present Concat')
  return out
}

async function tokens(engine: GenerationEngine, prompts: number[][], mixes: Float32Array[] = []) {
  const one = async (ids: number[], i: number) => {
    const got: number[] = []
    const mix = mixes[i % Math.max(1, mixes.length)]
    for await (const e of engine.submit({
      promptIds: ids,
      maxTokens: 5 + 3 * i,
      sampling: { temperature: 0, topP: 1, topK: 0 },
      ...(mix ? { controls: { mixWeights: mix } } : {}),
    }) as AsyncIterable<GenerationEvent>)
      if (e.type === 'token') got.push(e.id)
    return got
  }
  const first = prompts.map(one)
  // A late row joins the running batch mid-way.
  await new Promise((resolve) => setTimeout(resolve, 5))
  const late = one(prompts[0] ?? [], prompts.length)
  return Promise.all([...first, late])
}

describe('exposeNewKv', () => {
  it('adds each layer’s new keys and values as outputs, equal to present’s last positions; logits unchanged', async () => {
    const pkg = await loadPackage(join(LM, 'package'))
    const plain = (await openSession(pkg.model, { provider: 'cpu', threads: 1 })).session
    const exposed = (await openSession(rewritten(pkg.model), { provider: 'cpu', threads: 1 }))
      .session
    expect(exposed.outputNames).toContain(newKvOutput(2, 'value'))
    expect(withoutNewKv(exposed).outputNames).toEqual(plain.outputNames)
    // A second rewrite finds nothing left to add.
    expect(exposeNewKv(rewritten(pkg.model))).toBeUndefined()
    const B = 3
    const P = 4
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from([5n, 9n, 17n]), [B, 1]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (P + 1)).fill(1n), [B, P + 1]),
      position_ids: new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(P)), [B, 1]),
      ...encodeControls(
        [{ mixWeights: [1, 0, 0, 0, 0] }, { mixWeights: [0, 0.5, 0.5, 0, 0] }, {}],
        5,
        checkContract(pkg.manifest, plain, new Map()),
      ),
    }
    // Deterministic values in [-0.5, 0.5) (a Lehmer generator): any past will do, the graphs must agree on it.
    let seed = 1
    const next = () => {
      seed = (seed * 48271) % 2147483647
      return seed / 2147483647 - 0.5
    }
    for (let l = 0; l < 3; l++)
      for (const kv of ['key', 'value'])
        feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor(
          'float32',
          Float32Array.from({ length: B * 4 * P * 32 }, next),
          [B, 4, P, 32],
        )
    const a = await plain.run(feeds)
    const b = await exposed.run(feeds)
    expect(b.logits?.data).toEqual(a.logits?.data)
    for (let l = 0; l < 3; l++)
      for (const kv of ['key', 'value'] as const) {
        const present = a[`present.${l}.${kv}`]?.data as Float32Array
        const added = b[newKvOutput(l, kv)]
        expect(added?.dims).toEqual([B, 4, 1, 32])
        const data = (added?.data ?? new Float32Array(0)) as Float32Array
        const last = Array.from({ length: B * 4 }, (_, r) =>
          Array.from(present.subarray((r * (P + 1) + P) * 32, (r * (P + 1) + P + 1) * 32)),
        )
        const got = Array.from({ length: B * 4 }, (_, r) =>
          Array.from(data.subarray(r * 32, (r + 1) * 32)),
        )
        expect(got).toEqual(last)
      }
  })

  it('the engine on the rewritten base decoder reproduces PyTorch’s greedy continuations', async () => {
    const bytes = new Uint8Array(readFileSync(join(LM, 'models/base.onnx')))
    const { session } = await openSession(rewritten(bytes), { provider: 'cpu', threads: 1 })
    const engine = new GenerationEngine(new DecoderGraph(session, [], 0), OPTIONS)
    const expected = fixture.models.base ?? []
    expect(expected.length).toBeGreaterThan(2)
    const got = await Promise.all(
      expected.map(async (g) => {
        const ids: number[] = []
        for await (const e of engine.submit({
          promptIds: fixture.prompts[g.prompt]?.ids ?? [],
          maxTokens: fixture.maxNewTokens,
          sampling: { temperature: 0, topP: 1, topK: 0 },
        }))
          if (e.type === 'token') ids.push(e.id)
        return ids
      }),
    )
    expect(got).toEqual(expected.map((g) => g.greedyIds))
    expect(engine.counters.gathers).toBeLessThan(engine.counters.decodePasses)
    expect(engine.kvBytes).toBe(0)
  })

  it('twin package: the graph as served decodes exactly what the package’s graph does, mixes side by side', async () => {
    const pkg = await loadPackage(join(LM, 'package'))
    const engineOf = async (bytes: Uint8Array) => {
      const { session } = await openSession(bytes, { provider: 'cpu', threads: 1 })
      const controls = checkContract(pkg.manifest, withoutNewKv(session), new Map())
      return new GenerationEngine(new DecoderGraph(session, controls, 5), OPTIONS)
    }
    const prompts = fixture.prompts.map((p) => p.ids)
    const mixes = [
      Float32Array.from([1, 0, 0, 0, 0]),
      Float32Array.from([0, 0.3, 0, 0.7, 0]),
      Float32Array.from([0, 0, 0, 0, 0]),
    ]
    const plain = await tokens(await engineOf(pkg.model), prompts, mixes)
    // As the runner opens it: identical initializers shared too (decoderAsServed).
    const exposed = await tokens(await engineOf(decoderAsServed(pkg.model)), prompts, mixes)
    expect(exposed).toEqual(plain)
    expect(exposed.map((t) => t.length)).toEqual([
      ...prompts.map((_, i) => 5 + 3 * i),
      5 + 3 * prompts.length,
    ])
  })
})

describe('addNewKvOutputs', () => {
  it('gives the new-positions output present’s element type (a float16 cache loads and returns its new keys)', async () => {
    // present.0.key = Concat(past [1, 1, P, 2], k [1, 1, 1, 2]) on the position axis, all float16.
    const half = (name: string, dims: (number | string)[]) => ({
      name,
      type: {
        tensorType: {
          elemType: TensorDataType.FLOAT16,
          shape: {
            dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
          },
        },
      },
    })
    const graph = {
      name: 'kv16',
      node: [
        {
          opType: 'Concat',
          input: ['past_key_values.0.key', 'k'],
          output: ['present.0.key'],
          attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 2 }],
        },
      ],
      input: [half('past_key_values.0.key', [1, 1, 'past', 2]), half('k', [1, 1, 1, 2])],
      output: [half('present.0.key', [1, 1, 'total', 2])],
    }
    expect(addNewKvOutputs(graph)).toBe(1)
    const added = graph.output.find((o) => o.name === newKvOutput(0, 'key'))
    expect(added?.type?.tensorType?.elemType).toBe(TensorDataType.FLOAT16)
    const model = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph,
    }).finish()
    const { session } = await openSession(model, { provider: 'cpu', threads: 1 })
    // float16 bit patterns: 1.0 = 0x3c00, 2.0 = 0x4000, 3.0 = 0x4200.
    const out = await session.run({
      'past_key_values.0.key': new ort.Tensor(
        'float16',
        Uint16Array.from([0x3c00, 0x3c00]),
        [1, 1, 1, 2],
      ),
      k: new ort.Tensor('float16', Uint16Array.from([0x4000, 0x4200]), [1, 1, 1, 2]),
    })
    expect(Array.from(out[newKvOutput(0, 'key')]?.data as Uint16Array)).toEqual([0x4000, 0x4200])
  })
})
