/**
 * Router features: the shared model's value of one or more tensors per example, pooled per row over every axis
 * but the batch's and the last (a plain mean, or over the real tokens by the attention mask) as the twin graph
 * pools them, concatenated, and for text models optionally the bag of tokens; read in batches through onnxruntime.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { TensorProbe } from '../graph/probe.ts'
import {
  leadLayout,
  type RowLayout,
  rowOf as rowOfPosition,
  type TensorLayout,
} from '../graph/row-layout.ts'
import { type IoTensor, stackExamples } from '../import/model-io.ts'
import type { RoutingExample } from './routing-data.ts'

export interface Features {
  /** [n, d] row-major. */
  x: Float32Array
  /** [n] expert index per row. */
  y: Int32Array
  d: number
}

/** The router feature's layout, which must have the batch on an axis before the last (feature) axis. */
export function featureRows(name: string, layout: TensorLayout): RowLayout {
  if (layout.kind !== 'rows' || layout.axis >= layout.rank - 1)
    throw new AppError(
      'INVALID_REQUEST',
      `router feature '${name}' must have the batch on an axis before its last (feature) axis (got rank ${layout.rank}, ${layout.kind === 'rows' ? `batch on axis ${layout.axis}` : 'no batch axis: it is the same for every example'})`,
    )
  return layout
}

/**
 * Mean per batch row over every axis but the batch's and the last → [batch, d], as the twin graph pools the
 * feature (twin-graph/router-feature.ts). Without a layout the batch is axis 0.
 */
export function poolRows(
  data: Float32Array,
  dims: readonly number[],
  layout: RowLayout = leadLayout(dims.length),
  batch = dims[0] ?? 0,
): { rows: Float32Array; d: number } {
  const d = dims.at(-1) ?? 0
  const positions = dims.slice(0, -1).reduce((a, b) => a * b, 1)
  const mid = positions / batch
  if (
    dims.length < 2 ||
    layout.axis >= dims.length - 1 ||
    !Number.isInteger(mid) ||
    positions * d !== data.length
  )
    throw new AppError(
      'INVALID_REQUEST',
      `router feature has dims [${dims.join(',')}]; expected the batch (${batch}) on an axis before the last`,
    )
  if (mid === 1 && layout.axis === 0) return { rows: data, d }
  const rowOf = rowOfPosition(layout, dims, batch)
  const rows = new Float32Array(batch * d)
  for (let p = 0; p < positions; p++) {
    const b = rowOf(p)
    for (let j = 0; j < d; j++)
      rows[b * d + j] = (rows[b * d + j] as number) + (data[p * d + j] as number) / mid
  }
  return { rows, d }
}

/** Groups consecutive examples whose inputs have the same lengths into batches of at most `batch`. */
export function* batchesOf<T extends { inputs: Record<string, readonly number[]> }>(
  examples: readonly T[],
  batch: number,
): Generator<T[]> {
  let current: T[] = []
  let key = ''
  for (const ex of examples) {
    const k = Object.values(ex.inputs)
      .map((v) => v.length)
      .join(',')
    if (current.length > 0 && (k !== key || current.length >= batch)) {
      yield current
      current = []
    }
    key = k
    current.push(ex)
  }
  if (current.length > 0) yield current
}

/**
 * The bag of tokens' columns: `vocab` ids, then `bigrams` hashed pairs of adjacent real tokens (pair id
 * (a · vocab + b) mod bigrams), weighed by `weighting` (recipe `router.bag_of_tokens`, `bag_weighting`,
 * `bag_bigrams`).
 */
export interface BagSpec {
  vocab: number
  bigrams: number
  weighting: 'mean' | 'tfidf'
  /** `tfidf`: the inverse document frequency of every column, fitted on the router's training texts. */
  idf?: Float32Array
  /**
   * Checked pair buckets (recipe `router.bag_bigrams_checked`): per bucket, ⌊pair / bigrams⌋ of the one pair it
   * holds (−1: none), fitted on the router's training texts (fitPairOwners); a pair counts only in its own bucket.
   */
  owners?: Int32Array
}

/**
 * What the router reads besides its feature tensors, text models only (recipe `router.pooling` and
 * `router.bag_of_tokens`; router/router-inputs.ts resolves them).
 */
export interface TokenRouterInputs {
  /** `masked` pooling: the graph input holding the attention mask (int64 [batch, seq], 1 = a real token). */
  mask?: string
  /** The bag of tokens of the ids input, masked by `mask`; `checked`: fit `owners` before training. */
  bag?: BagSpec & { ids: string; mask: string; checked?: boolean }
}

/**
 * Mean over the real tokens of each row of a [batch, seq, d] feature (mask [batch, seq], 1 = real), as the twin
 * graph computes it (twin-graph/router-feature.ts): Σ mask·x / max(Σ mask, 1). A [batch, d] feature is returned
 * as it is. Only a batch-leading [batch, seq, d] tensor whose seq is the mask's can be pooled by the mask.
 */
export function poolMasked(
  name: string,
  data: Float32Array,
  dims: readonly number[],
  masks: readonly (readonly number[])[],
): { rows: Float32Array; d: number } {
  const batch = masks.length
  if (dims.length === 2 && dims[0] === batch) return { rows: data, d: dims[1] as number }
  const seq = masks[0]?.length ?? 0
  if (dims.length !== 3 || dims[0] !== batch || dims[1] !== seq)
    throw new AppError(
      'INVALID_REQUEST',
      `router.pooling masked: feature '${name}' has dims [${dims.join(',')}]; masked pooling needs [batch, seq, d] with the mask's [${batch}, ${seq}]`,
    )
  const d = dims[2] as number
  const rows = new Float32Array(batch * d)
  for (let b = 0; b < batch; b++) {
    const m = masks[b] as readonly number[]
    let n = 0
    for (let p = 0; p < seq; p++) {
      if (m[p] === 0) continue
      n += m[p] as number
      const at = (b * seq + p) * d
      for (let j = 0; j < d; j++)
        rows[b * d + j] = (rows[b * d + j] as number) + (data[at + j] as number)
    }
    const den = Math.max(n, 1)
    for (let j = 0; j < d; j++) rows[b * d + j] = (rows[b * d + j] as number) / den
  }
  return { rows, d }
}

/** Columns of a text's bag: its real tokens' ids, and the pairs of adjacent real tokens (offset by vocab). */
export function bagKeys(
  ids: readonly number[],
  mask: readonly number[],
  bag: Pick<BagSpec, 'vocab' | 'bigrams' | 'owners'>,
): { tokens: number[]; pairs: number[] } {
  const tokens: number[] = []
  const pairs: number[] = []
  for (let p = 0; p < ids.length; p++) {
    if (mask[p] === 0) continue
    const id = ids[p] as number
    if (!(Number.isInteger(id) && id >= 0 && id < bag.vocab))
      throw new AppError(
        'INVALID_REQUEST',
        `router.bag_of_tokens: token id ${id} is outside the vocabulary (${bag.vocab})`,
      )
    tokens.push(id)
    if (bag.bigrams > 0 && p + 1 < ids.length && mask[p + 1] !== 0) {
      const pair = id * bag.vocab + (ids[p + 1] as number)
      const bucket = pair % bag.bigrams
      if (!bag.owners || bag.owners[bucket] === Math.floor(pair / bag.bigrams))
        pairs.push(bag.vocab + bucket)
    }
  }
  return { tokens, pairs }
}

/**
 * The pair each bucket holds (recipe `router.bag_bigrams_checked`): the pair seen most often in `examples` among
 * those hashed to it (ties: the smaller pair id), as ⌊pair / bigrams⌋, or −1 for a bucket no pair reached.
 */
export function fitPairOwners(
  examples: readonly { inputs: Record<string, readonly number[]> }[],
  bag: NonNullable<TokenRouterInputs['bag']>,
): Int32Array {
  const counts = new Map<number, number>()
  for (const ex of examples) {
    const ids = ex.inputs[bag.ids] ?? []
    const mask = ex.inputs[bag.mask] ?? []
    // Unchecked keys: every pair of adjacent real tokens, as its pair id.
    for (let p = 0; p + 1 < ids.length; p++)
      if (mask[p] !== 0 && mask[p + 1] !== 0) {
        const pair = (ids[p] as number) * bag.vocab + (ids[p + 1] as number)
        counts.set(pair, (counts.get(pair) ?? 0) + 1)
      }
  }
  const best = new Map<number, number>() // bucket → pair
  for (const [pair, c] of counts) {
    const bucket = pair % bag.bigrams
    const held = best.get(bucket)
    const heldCount = held === undefined ? 0 : (counts.get(held) as number)
    if (held === undefined || c > heldCount || (c === heldCount && pair < held))
      best.set(bucket, pair)
  }
  const owners = new Int32Array(bag.bigrams).fill(-1)
  for (const [bucket, pair] of best) owners[bucket] = Math.floor(pair / bag.bigrams)
  return owners
}

/**
 * Inverse document frequency of every bag column over `examples` (scikit-learn's smooth form,
 * ln((1 + n) / (1 + df)) + 1): [vocab + bigrams].
 */
export function fitBagIdf(
  examples: readonly { inputs: Record<string, readonly number[]> }[],
  bag: NonNullable<TokenRouterInputs['bag']>,
): Float32Array {
  const df = new Float64Array(bag.vocab + bag.bigrams)
  for (const ex of examples) {
    const { tokens, pairs } = bagKeys(ex.inputs[bag.ids] ?? [], ex.inputs[bag.mask] ?? [], bag)
    for (const k of new Set([...tokens, ...pairs])) df[k] = (df[k] as number) + 1
  }
  return Float32Array.from(df, (d) => Math.log((1 + examples.length) / (1 + d)) + 1)
}

/**
 * The bag of tokens per example: [batch, vocab + bigrams]. `mean`: count of each id / number of real tokens (and
 * of each pair / number of pairs); `tfidf`: (1 + ln count) · idf, scaled to unit L2 norm per text.
 */
export function bagOfTokens(
  examples: readonly { inputs: Record<string, readonly number[]> }[],
  bag: NonNullable<TokenRouterInputs['bag']>,
): Float32Array {
  const width = bag.vocab + bag.bigrams
  const out = new Float32Array(examples.length * width)
  const idf = bag.idf
  if (bag.weighting === 'tfidf' && idf?.length !== width)
    throw new Error(`a tf-idf bag needs ${width} idf values (fitBagIdf)`)
  examples.forEach((ex, b) => {
    const ids = ex.inputs[bag.ids] ?? []
    const mask = ex.inputs[bag.mask] ?? []
    const { tokens, pairs } = bagKeys(ids, mask, bag)
    const row = out.subarray(b * width, (b + 1) * width)
    if (bag.weighting === 'mean') {
      // The real tokens' mask values (1) weigh each id, as the graph's Cast(mask) does.
      let n = 0
      for (let p = 0; p < ids.length; p++) if (mask[p] !== 0) n += mask[p] as number
      const w = 1 / Math.max(n, 1)
      for (let p = 0; p < ids.length; p++)
        if (mask[p] !== 0)
          row[ids[p] as number] = (row[ids[p] as number] as number) + w * (mask[p] as number)
      for (const k of pairs) row[k] = (row[k] as number) + 1 / pairs.length
      return
    }
    const counts = new Map<number, number>()
    for (const k of [...tokens, ...pairs]) counts.set(k, (counts.get(k) ?? 0) + 1)
    let sq = 0
    for (const [k, c] of counts) {
      const v = (1 + Math.log(c)) * (idf?.[k] as number)
      sq += v * v
    }
    const den = Math.sqrt(Math.max(sq, TFIDF_NORM_FLOOR))
    for (const [k, c] of counts) row[k] = ((1 + Math.log(c)) * (idf?.[k] as number)) / den
  })
  return out
}

/** Floor of a tf-idf bag's squared norm (an empty text's bag stays zero), the same in the graph. */
export const TFIDF_NORM_FLOOR = 1e-12

/**
 * Router features of every example: each tensor of `features` pooled to [n, d_i] (mean, or masked with
 * `tokens.mask`), concatenated in order, then the bag of tokens when asked for: [n, Σ d_i (+ vocab)].
 */
export async function extractFeatures(
  model: IModelProto,
  features: string | readonly string[],
  inputs: readonly IoTensor[],
  examples: readonly RoutingExample[],
  opts: {
    batch?: number
    /** Per feature (or one for a single feature); default: batch on axis 0. */
    layout?: RowLayout | readonly RowLayout[]
    tokens?: TokenRouterInputs
    dir?: string
    onBatch?: (done: number) => void
  } = {},
): Promise<Features> {
  const names = typeof features === 'string' ? [features] : [...features]
  const layouts = Array.isArray(opts.layout)
    ? opts.layout
    : names.map(() => opts.layout as RowLayout | undefined)
  const { mask, bag } = opts.tokens ?? {}
  const probe = await TensorProbe.open(model, names, undefined, opts.dir)
  const chunks: Float32Array[] = []
  let d = 0
  let done = 0
  try {
    for (const group of batchesOf(examples, opts.batch ?? 256)) {
      const out = await probe.run(
        stackExamples(
          inputs,
          group.map((g) => g.inputs),
          'router data',
        ),
        names,
      )
      const parts = names.map((feature, i) => {
        const t = out.get(feature)
        if (t?.type !== 'float32')
          throw new AppError(
            'INVALID_REQUEST',
            `router feature '${feature}' is not a float32 tensor`,
          )
        return mask !== undefined
          ? poolMasked(
              feature,
              t.data as Float32Array,
              t.dims,
              group.map((g) => g.inputs[mask] ?? []),
            )
          : poolRows(t.data as Float32Array, t.dims, layouts[i], group.length)
      })
      const bagWidth = bag ? bag.vocab + bag.bigrams : 0
      const width = parts.reduce((a, p) => a + p.d, 0) + bagWidth
      if (d !== 0 && width !== d)
        throw new AppError(
          'INVALID_REQUEST',
          `router feature '${names.join("', '")}' changes width (${d} vs ${width})`,
        )
      d = width
      const rows = new Float32Array(group.length * width)
      const bags = bag ? bagOfTokens(group, bag) : undefined
      for (let b = 0; b < group.length; b++) {
        let at = b * width
        for (const p of parts) {
          rows.set(p.rows.subarray(b * p.d, (b + 1) * p.d), at)
          at += p.d
        }
        if (bags) rows.set(bags.subarray(b * bagWidth, (b + 1) * bagWidth), at)
      }
      chunks.push(rows)
      done += group.length
      opts.onBatch?.(done)
    }
  } finally {
    await probe.release()
  }
  const x = new Float32Array(examples.length * d)
  let at = 0
  for (const c of chunks) {
    x.set(c, at)
    at += c.length
  }
  return { x, y: Int32Array.from(examples, (e) => e.expert), d }
}
