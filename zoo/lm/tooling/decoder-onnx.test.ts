/**
 * The LM zoo's ONNX decoders (issue 14) in onnxruntime-node: the KV cache reproduces full-sequence logits,
 * left padding reproduces unpadded rows, and greedy decoding reproduces PyTorch's (fixtures/generation.json).
 */
import { describe, expect, it } from 'vitest'
import {
  DecoderSession,
  maxAbsDiff,
  positionsFromMask,
  type StepResult,
  sequenceNll,
} from './decoder-session.ts'
import { lmZooPath, readLmZooJson, readLmZooManifest } from './lm-zoo-files.ts'

interface GenerationFixture {
  maxNewTokens: number
  padId: number
  prompts: {
    kind: 'raw' | 'chat'
    domain: string
    text: string
    addSpecialTokens: boolean
    ids: number[]
  }[]
  leftPaddedBatch: number[]
  models: Record<
    string,
    {
      prompt: number
      greedyIds: number[]
      greedyText: string
      minMargin: number
      stepOneLogits?: number[]
    }[]
  >
}

interface NllFixture {
  docs: { docId: string; ids: number[]; nll: Record<string, number> }[]
}

const manifest = readLmZooManifest()
const dims = {
  layers: manifest.model.layers,
  heads: manifest.model.heads,
  headDim: manifest.model.headDim,
  vocabSize: manifest.model.vocabSize,
}
const generation = readLmZooJson<GenerationFixture>('fixtures', 'generation.json')
const nllFixture = readLmZooJson<NllFixture>('fixtures', 'perplexity.json')

function open(model: string): Promise<DecoderSession> {
  const entry = manifest.models[model]
  if (entry === undefined) throw new Error(`zoo.json has no model ${model}`)
  return DecoderSession.open(lmZooPath(entry.file), dims)
}

function promptIds(i: number): number[] {
  const p = generation.prompts[i]
  if (p === undefined) throw new Error(`no prompt ${i}`)
  return p.ids
}

/** A sequence long enough to exercise the cache: the first prompt and its base greedy continuation. */
function longSequence(): number[] {
  const first = generation.models.base?.[0]
  if (first === undefined) throw new Error('no base generation')
  return [...promptIds(first.prompt), ...first.greedyIds]
}

async function fullPass(session: DecoderSession, ids: number[]): Promise<StepResult> {
  const mask = [ids.map(() => 1)]
  return session.step([ids], mask, positionsFromMask(mask, ids.length), session.emptyCache(1))
}

describe('LM zoo decoders in onnxruntime-node', () => {
  it('have the Hugging Face decoder inputs and outputs that zoo.json lists', async () => {
    const session = await open('base')
    expect([...session.inputNames]).toEqual(manifest.onnx.inputs.map((i) => i.name))
    expect([...session.outputNames]).toEqual(manifest.onnx.outputs.map((o) => o.name))
  })

  it('prefill + decode steps through the cache reproduce the full-sequence logits', async () => {
    const session = await open('base')
    const ids = longSequence()
    const full = await fullPass(session, ids)
    // Prefill 5 tokens, then one token per step, then a 3-token chunk on top of a cache (S > 1 with P > 0).
    const chunks = [5, ...Array<number>(ids.length - 8).fill(1), 3]
    let cache = session.emptyCache(1)
    let done = 0
    let worst = 0
    for (const n of chunks) {
      const mask = [Array<number>(done + n).fill(1)]
      const step = await session.step(
        [ids.slice(done, done + n)],
        mask,
        positionsFromMask(mask, n),
        cache,
      )
      for (let s = 0; s < n; s++) {
        worst = Math.max(
          worst,
          maxAbsDiff(session.row(step, n, 0, s), session.row(full, ids.length, 0, done + s)),
        )
      }
      cache = step.cache
      done += n
    }
    expect(done).toBe(ids.length)
    expect(cache[0]?.dims).toEqual([1, dims.heads, ids.length, dims.headDim])
    expect(worst).toBeLessThan(1e-4)
  })

  it('a left-padded batch reproduces each unpadded sequence, in prefill and decode', async () => {
    const session = await open('fortunes')
    const prompts = generation.leftPaddedBatch.map(promptIds)
    expect(new Set(prompts.map((p) => p.length)).size).toBeGreaterThan(1)
    const batched = await session.greedy(prompts, 6, generation.padId)
    for (const [b, p] of prompts.entries()) {
      const single = await session.greedy([p], 6, generation.padId)
      expect(batched.ids[b]).toEqual(single.ids[0])
      const first = single.firstLogits[0]
      const row = batched.firstLogits[b]
      if (first === undefined || row === undefined) throw new Error('missing logits')
      expect(maxAbsDiff(row, first)).toBeLessThan(1e-4)
    }
  })

  for (const model of Object.keys(generation.models)) {
    it(`greedy decoding with ${model} reproduces PyTorch's tokens and step-1 logits`, async () => {
      const session = await open(model)
      for (const expected of generation.models[model] ?? []) {
        expect(expected.minMargin).toBeGreaterThan(0.01)
        const got = await session.greedy([promptIds(expected.prompt)], generation.maxNewTokens, 0)
        expect(got.ids[0]).toEqual(expected.greedyIds)
        const first = got.firstLogits[0]
        if (expected.stepOneLogits !== undefined && first !== undefined) {
          expect(maxAbsDiff(first, expected.stepOneLogits)).toBeLessThan(1e-3)
        }
      }
      const batch = await session.greedy(
        generation.leftPaddedBatch.map(promptIds),
        generation.maxNewTokens,
        generation.padId,
      )
      expect(batch.ids).toEqual(
        generation.leftPaddedBatch.map(
          (i) => generation.models[model]?.find((g) => g.prompt === i)?.greedyIds,
        ),
      )
    })
  }

  it("reproduces PyTorch's summed NLL of held-out documents (the perplexity loop)", async () => {
    for (const model of Object.keys(nllFixture.docs[0]?.nll ?? {})) {
      const session = await open(model)
      for (const doc of nllFixture.docs) {
        const expected = doc.nll[model] ?? Number.NaN
        expect(Math.abs((await sequenceNll(session, doc.ids)) - expected)).toBeLessThan(
          1e-4 * expected + 1e-3,
        )
      }
    }
  })

  it('refuses a position beyond the context with an error, not garbage', async () => {
    const session = await open('base')
    const n = manifest.model.maxContext
    // Position n indexes past the [n, d] position table: onnxruntime's Gather refuses it.
    await expect(session.step([[1]], [[1]], [[n]], session.emptyCache(1))).rejects.toThrow(/out of/)
  })
})
