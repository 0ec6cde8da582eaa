/**
 * A decoder graph in the Hugging Face layout with past key/values (zoo/lm/README.md), as the generation engine
 * drives it: one batched forward pass from host arrays, with the twin graph's control inputs when it has them
 * (a plain decoder, e.g. one of the zoo's expert files, has none). The layout (layers, heads, head size) is read
 * from the graph's `past_key_values.N.key` inputs, so nothing about the model is hard-coded here.
 * @module
 */
import { AppError, TWIN_OUTPUT_WEIGHTS, type TwinInputKey } from '@twinserve/shared'
import { ort } from '../runtime/ort-session.ts'
import type { RunnableSession } from '../runtime/threaded-session.ts'
import { encodeControls, type RowControls } from '../twin-contract/encode-controls.ts'
import { TARGET_IDS, TARGET_LOGPROBS } from './likelihood-graph.ts'
import type { MergedDecoder, MergedMix } from './merged-mixes.ts'
import { newKvOutput } from './new-kv-outputs.ts'

export interface DecoderLayout {
  layers: number
  heads: number
  headDim: number
}

/** One forward pass's inputs: B rows of S new tokens on P cached positions (left-padded, mask 0). */
export interface DecoderFeeds {
  batch: number
  /** New tokens per row (S). */
  seq: number
  /** Cached positions per row (P, the longest row's; shorter rows are left-padded). */
  past: number
  ids: BigInt64Array // [B, S]
  mask: BigInt64Array // [B, P + S]
  positions: BigInt64Array // [B, S]
  /** 2·layers arrays in the order k0, v0, k1, v1, …; each [B, H, P, hd]. */
  cache: Float32Array[]
  /** Whether the pass's new keys and values are wanted (default true; a scoring pass needs only logits). */
  keys?: boolean
  /** Per row, for a twin graph; ignored by a plain decoder. */
  controls: readonly RowControls[]
}

export interface DecoderOutputs {
  logits: Float32Array // [B, S, V]
  vocab: number
  /** The pass's new keys and values: 2·layers arrays, k0, v0, …; each [B, H, S, hd] ([] if `keys` was false). */
  added: Float32Array[]
  /** The weights each row applied, [B, T] (twin graphs only). */
  weights?: Float32Array
}

/** A scoring pass's inputs: a forward pass from position 0 whose logits are wanted only at each row's targets. */
export interface ScoreFeeds extends Omit<DecoderFeeds, 'keys'> {
  /** The id each position predicts (the next token; anything where nothing is scored), [B, S]. */
  targets: BigInt64Array
}

export interface ScoreOutputs {
  /** log p(targets[b, s] | the row's ids up to s), [B, S]. */
  logprobs: Float32Array
  /** The weights each row applied, [B, T] (twin graphs only). */
  weights?: Float32Array
}

const PAST = /^past_key_values\.(\d+)\.key$/

export class DecoderGraph {
  readonly layout: DecoderLayout
  /** Bytes of keys and values one cached token takes. */
  readonly bytesPerToken: number
  /** Outputs a pass fetches: logits, the applied weights (twin), and the new keys and values. */
  private readonly fetches: { base: string[]; keys: string[]; sliced: boolean }

  /**
   * @param session  an onnxruntime session of a decoder (plain, or a twin graph)
   * @param controls the twin graph's control inputs (checkContract's answer); [] for a plain decoder
   * @param experts  T, the number of experts (0 for a plain decoder)
   * @param scorer   a session of the same decoder's likelihood graph (likelihood-graph.ts), for score()
   * @param scorerGrouped the scorer is the grouped likelihood graph (grouped-likelihood-graph.ts): it takes
   *   one-hot rows only, expert-major (prompt-likelihood.ts scoringRow)
   * @param merged  the merged decode graph's sessions (merged-decode-graph.ts), for passes whose rows share a mix
   */
  constructor(
    private readonly session: RunnableSession,
    readonly controls: readonly TwinInputKey[],
    readonly experts: number,
    readonly scorer?: RunnableSession,
    readonly scorerGrouped = false,
    readonly merged?: MergedDecoder,
  ) {
    if (
      scorer &&
      !(scorer.inputNames.includes(TARGET_IDS) && scorer.outputNames.includes(TARGET_LOGPROBS))
    )
      throw new AppError(
        'INVALID_MODEL',
        `the scoring session is not a likelihood graph (input ${TARGET_IDS}, output ${TARGET_LOGPROBS})`,
      )
    this.layout = DecoderGraph.layoutOf(session)
    const { layers, heads, headDim } = this.layout
    this.bytesPerToken = 2 * layers * heads * headDim * Float32Array.BYTES_PER_ELEMENT
    const names = session.outputNames
    const base = ['logits', ...(names.includes(TWIN_OUTPUT_WEIGHTS) ? [TWIN_OUTPUT_WEIGHTS] : [])]
    // A graph rewritten by exposeNewKv returns the new positions alone; any other, the whole `present`, from
    // which run() slices them.
    const exposed = names.includes(newKvOutput(0, 'key'))
    const keys = Array.from({ length: 2 * layers }, (_, i) => {
      const kind = i % 2 === 0 ? 'key' : 'value'
      const l = Math.floor(i / 2)
      return exposed ? newKvOutput(l, kind) : `present.${l}.${kind}`
    })
    this.fetches = { base, keys, sliced: !exposed }
  }

  /** Whether a session looks like a decoder with a KV cache: `input_ids` and `past_key_values.0.key`. */
  static isDecoder(session: Pick<ort.InferenceSession, 'inputNames'>): boolean {
    return (
      session.inputNames.includes('input_ids') &&
      session.inputNames.includes('past_key_values.0.key')
    )
  }

  static layoutOf(session: Pick<RunnableSession, 'inputMetadata' | 'inputNames'>): DecoderLayout {
    const layers = session.inputNames.filter((n) => PAST.test(n)).length
    const meta = session.inputMetadata.find((m) => m.name === 'past_key_values.0.key')
    const shape = meta?.isTensor ? meta.shape : []
    const [, heads, , headDim] = shape
    if (layers === 0 || typeof heads !== 'number' || typeof headDim !== 'number')
      throw new AppError(
        'INVALID_MODEL',
        `not a decoder with a KV cache: past_key_values.N.key must be [batch, heads, past, head_dim] with fixed heads and head_dim (got [${shape.join(', ')}])`,
      )
    return { layers, heads, headDim }
  }

  /** The vocabulary size, when the graph's `logits` output declares it ([batch, seq, vocab]). */
  get vocab(): number | undefined {
    const meta = this.session.outputMetadata.find((m) => m.name === 'logits')
    const v = meta?.isTensor ? meta.shape[2] : undefined
    return typeof v === 'number' ? v : undefined
  }

  /** True when the graph routes and mixes experts (it has the twin controls). */
  get isTwin(): boolean {
    return this.controls.length > 0
  }

  /** The feeds of a pass, controls encoded for a twin graph. */
  private feedsOf(f: Omit<DecoderFeeds, 'keys'>): Record<string, ort.Tensor> {
    const { layers, heads, headDim } = this.layout
    const { batch: B, seq: S, past: P } = f
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', f.ids, [B, S]),
      attention_mask: new ort.Tensor('int64', f.mask, [B, P + S]),
      position_ids: new ort.Tensor('int64', f.positions, [B, S]),
    }
    for (let l = 0; l < layers; l++)
      for (const [j, kv] of ['key', 'value'].entries())
        feeds[`past_key_values.${l}.${kv}`] = new ort.Tensor(
          'float32',
          f.cache[2 * l + j] ?? new Float32Array(0),
          [B, heads, P, headDim],
        )
    if (this.isTwin) Object.assign(feeds, encodeControls(f.controls, this.experts, this.controls))
    return feeds
  }

  /**
   * Each position's log-probability of its target, computed inside onnxruntime by the likelihood graph: [B, S]
   * numbers come back instead of [B, S, V] logits.
   * @throws AppError INTERNAL when the graph has no scorer (check `scorer` first)
   */
  async score(f: ScoreFeeds): Promise<ScoreOutputs> {
    if (!this.scorer) throw new AppError('INTERNAL', 'this decoder has no likelihood graph')
    const feeds = this.feedsOf(f)
    feeds[TARGET_IDS] = new ort.Tensor('int64', f.targets, [f.batch, f.seq])
    const names = this.scorer.outputNames.includes(TWIN_OUTPUT_WEIGHTS)
      ? [TARGET_LOGPROBS, TWIN_OUTPUT_WEIGHTS]
      : [TARGET_LOGPROBS]
    const out = await this.scorer.run(feeds, names)
    const lp = out[TARGET_LOGPROBS]
    if (lp?.type !== 'float32')
      throw new AppError('INTERNAL', `the likelihood graph returned no float32 ${TARGET_LOGPROBS}`)
    const w = out[TWIN_OUTPUT_WEIGHTS]
    return {
      logprobs: lp.data as Float32Array,
      ...(w?.type === 'float32' ? { weights: w.data as Float32Array } : {}),
    }
  }

  /**
   * One forward pass. With `merged` (a kept mix, merged-mixes.ts) it runs on the session with that mix baked in when
   * there is one, else on the merged decode graph with the mix's matrices; either is exact only when every row's
   * controls apply that mix: the caller checks.
   */
  async run(f: DecoderFeeds, merged?: MergedMix): Promise<DecoderOutputs> {
    const { heads, headDim } = this.layout
    const { batch: B, seq: S, past: P } = f
    const feeds = this.feedsOf(f)
    const wantKeys = f.keys !== false
    let session = this.session
    let base = this.fetches.base
    if (merged) {
      if (!this.merged) throw new AppError('INTERNAL', 'this decoder has no merged decode graph')
      if (merged.baked) {
        session = merged.baked
        // A baked session has dropped the inputs it no longer reads (its mix among them).
        for (const name of Object.keys(feeds))
          if (!session.inputNames.includes(name)) delete feeds[name]
      } else {
        session = this.merged.decode
        Object.assign(feeds, merged.matrices)
      }
      // The merged decode graph may drop the applied weights (every row's are its explicit mix).
      const names = session.outputNames
      base = base.filter((n) => names.includes(n))
    }
    const out = await session.run(feeds, [...base, ...(wantKeys ? this.fetches.keys : [])])
    const logits = out.logits
    if (logits?.type !== 'float32')
      throw new AppError('INTERNAL', 'the decoder returned no float32 logits')
    const added: Float32Array[] = []
    if (wantKeys)
      for (const name of this.fetches.keys) {
        const t = out[name]
        if (t?.type !== 'float32') throw new AppError('INTERNAL', `the decoder returned no ${name}`)
        const data = t.data as Float32Array
        added.push(
          this.fetches.sliced && P > 0 ? lastPositions(data, B * heads, P + S, S, headDim) : data,
        )
      }
    const w = out[TWIN_OUTPUT_WEIGHTS]
    return {
      logits: logits.data as Float32Array,
      vocab: Number(logits.dims[2]),
      added,
      ...(w?.type === 'float32' ? { weights: w.data as Float32Array } : {}),
    }
  }
}

/** The last `S` of `total` positions of each of `rows` rows ([rows, total, hd] → [rows, S, hd]). */
function lastPositions(a: Float32Array, rows: number, total: number, S: number, hd: number) {
  const out = new Float32Array(rows * S * hd)
  for (let r = 0; r < rows; r++)
    out.set(a.subarray((r * total + total - S) * hd, (r + 1) * total * hd), r * S * hd)
  return out
}
