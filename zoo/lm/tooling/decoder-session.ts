/**
 * A minimal onnxruntime-node driver for the LM zoo's decoder layout (Hugging Face style, with past key/values),
 * used by the zoo's tests to check the exported graphs: prefill, decode steps through the cache, left padding,
 * summed NLL. A reference for the runner's generation loop and the perplexity benchmark, not that loop.
 * @module
 */
import { ort } from '@twinserve/gpu-runner/runtime'

export interface DecoderDims {
  layers: number
  heads: number
  headDim: number
  vocabSize: number
}

/** present.N.key / present.N.value of one run, in layer order: [k0, v0, k1, v1, …], each [B,H,T,hd]. */
export type KvCache = ort.Tensor[]

export interface StepResult {
  /** [B,S,V] row-major. */
  logits: Float32Array
  cache: KvCache
}

function int64(rows: readonly (readonly number[])[]): ort.Tensor {
  const width = rows[0]?.length ?? 0
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, width])
}

/** Positions as the zoo defines them: number of kept tokens before each one (cumsum(mask) - 1, at least 0). */
export function positionsFromMask(
  mask: readonly (readonly number[])[],
  newTokens: number,
): number[][] {
  return mask.map((row) => {
    let kept = 0
    const pos = row.map((m) => {
      kept += m
      return Math.max(0, kept - 1)
    })
    return pos.slice(pos.length - newTokens)
  })
}

export class DecoderSession {
  private constructor(
    private readonly session: ort.InferenceSession,
    readonly dims: DecoderDims,
  ) {}

  static async open(path: string, dims: DecoderDims): Promise<DecoderSession> {
    return new DecoderSession(await ort.InferenceSession.create(path), dims)
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames
  }

  /** past_sequence_length 0: what a prefill feeds. */
  emptyCache(batch: number): KvCache {
    const { layers, heads, headDim } = this.dims
    return Array.from(
      { length: 2 * layers },
      () => new ort.Tensor('float32', new Float32Array(0), [batch, heads, 0, headDim]),
    )
  }

  /** One forward pass: ids/positions [B,S], mask [B,P+S], cache from the previous step (P positions). */
  async step(
    ids: readonly (readonly number[])[],
    mask: readonly (readonly number[])[],
    positions: readonly (readonly number[])[],
    cache: KvCache,
  ): Promise<StepResult> {
    const feeds: Record<string, ort.Tensor> = {
      input_ids: int64(ids),
      attention_mask: int64(mask),
      position_ids: int64(positions),
    }
    for (let i = 0; i < this.dims.layers; i++) {
      const k = cache[2 * i]
      const v = cache[2 * i + 1]
      if (k === undefined || v === undefined) throw new Error(`cache has no layer ${i}`)
      feeds[`past_key_values.${i}.key`] = k
      feeds[`past_key_values.${i}.value`] = v
    }
    const out = await this.session.run(feeds)
    const logits = out.logits
    if (logits === undefined) throw new Error('no logits output')
    const next: KvCache = []
    for (let i = 0; i < this.dims.layers; i++) {
      for (const kv of ['key', 'value']) {
        const t = out[`present.${i}.${kv}`]
        if (t === undefined) throw new Error(`no present.${i}.${kv} output`)
        next.push(t)
      }
    }
    return { logits: logits.data as Float32Array, cache: next }
  }

  /** Logits of row b at position s of a [B,S,V] result. */
  row(result: StepResult, seqLen: number, b: number, s: number): Float32Array {
    const V = this.dims.vocabSize
    const at = (b * seqLen + s) * V
    return result.logits.subarray(at, at + V)
  }

  /**
   * Greedy decoding of a left-padded batch through the cache: one prefill, then one token per row per step.
   * Returns the new ids per row and the prefill's last-position logits per row.
   */
  async greedy(
    prompts: readonly (readonly number[])[],
    maxNewTokens: number,
    padId: number,
  ): Promise<{ ids: number[][]; firstLogits: Float32Array[] }> {
    const width = Math.max(...prompts.map((p) => p.length))
    const ids = prompts.map((p) => [...Array<number>(width - p.length).fill(padId), ...p])
    let mask = prompts.map((p) => [
      ...Array<number>(width - p.length).fill(0),
      ...Array<number>(p.length).fill(1),
    ])
    let result = await this.step(
      ids,
      mask,
      positionsFromMask(mask, width),
      this.emptyCache(prompts.length),
    )
    let seqLen = width
    const firstLogits = prompts.map((_, b) => this.row(result, seqLen, b, seqLen - 1).slice())
    const out: number[][] = prompts.map(() => [])
    for (let t = 0; t < maxNewTokens; t++) {
      const next = prompts.map((_, b) => argmax(this.row(result, seqLen, b, seqLen - 1)))
      for (const [b, id] of next.entries()) out[b]?.push(id)
      mask = mask.map((row) => [...row, 1])
      result = await this.step(
        next.map((id) => [id]),
        mask,
        positionsFromMask(mask, 1),
        result.cache,
      )
      seqLen = 1
    }
    return { ids: out, firstLogits }
  }
}

export function argmax(v: Float32Array): number {
  let best = 0
  for (let i = 1; i < v.length; i++) if ((v[i] ?? -Infinity) > (v[best] ?? -Infinity)) best = i
  return best
}

export function maxAbsDiff(
  a: Float32Array | readonly number[],
  b: Float32Array | readonly number[],
): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] ?? 0) - (b[i] ?? 0)))
  return m
}

/** Summed negative log-likelihood (nats) of ids[1..] given their prefixes, from one full-sequence pass. */
export async function sequenceNll(
  session: DecoderSession,
  ids: readonly number[],
): Promise<number> {
  const mask = [ids.map(() => 1)]
  const result = await session.step(
    [ids],
    mask,
    positionsFromMask(mask, ids.length),
    session.emptyCache(1),
  )
  let nll = 0
  for (let s = 0; s + 1 < ids.length; s++) {
    const row = session.row(result, ids.length, 0, s)
    let max = -Infinity
    for (const x of row) max = Math.max(max, x)
    let sum = 0
    for (const x of row) sum += Math.exp(x - max)
    nll += max + Math.log(sum) - (row[ids[s + 1] ?? 0] ?? 0)
  }
  return nll
}
