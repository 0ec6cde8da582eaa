/**
 * Routers as graph fragments, embedded in the twin graph so that one run does route → merge → infer.
 * The first two standardise the [batch, d] feature with the training split's mean and std first.
 * - MLP (Twin-Merging's router): ReLU layers, softmax over the T experts; it may also read the input ids' bag
 *   of tokens, gathered from its first layer's weights (emitBagOfTokens).
 * - Prototype (data-light, no labels needed beyond the expert of each example): cosine similarity of the
 *   standardised feature to each expert's mean standardised feature, softmax with a temperature.
 * - Data-free (SMILE, data-free-router.ts): the feature's energy in each expert's stored input subspace; it
 *   reads the raw feature (no data to standardise with).
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging, §3.3 and its router.py)
 * @module
 */
import { float16Tensor } from '../../onnx/float16.ts'
import { onnx } from '../../onnx/proto.ts'
import type { MlpWeights } from '../../train/mlp.ts'
import type { GraphEditor } from '../graph/graph-editor.ts'
import type { Ops } from '../graph/ops.ts'
import type { RouterEmitter } from '../twin-graph/rewrite-context.ts'
import type { DataFreeRouter } from './data-free-router.ts'
import { type BagSpec, TFIDF_NORM_FLOOR } from './features.ts'

export interface Standardizer {
  /** [d] */
  mean: Float32Array
  /** [d], strictly positive */
  std: Float32Array
}

export type RouterModel =
  | {
      kind: 'mlp'
      standardizer: Standardizer
      mlp: MlpWeights
      /**
       * The feature's last `vocab + bigrams` columns are the bag of tokens (recipe `router.bag_of_tokens`); a
       * spec without `weighting` is a plain `mean` bag of ids.
       */
      bag?: Pick<BagSpec, 'vocab'> & Partial<BagSpec>
      /** Logits × this before the softmax (recipe `router.sharpness`); absent: 1. */
      sharpness?: number
      /** Storage type of the layers' weight matrices (recipe `router.dtype`); biases stay float32. */
      dtype?: 'float32' | 'float16'
    }
  | DataFreeRouter
  | {
      kind: 'prototype'
      standardizer: Standardizer
      /** [d, T] column t = expert t's mean standardised feature, L2-normalised. */
      prototypes: Float32Array
      temperature: number
    }

function standardize(
  editor: GraphEditor,
  feature: string,
  s: Standardizer,
  d = s.mean.length,
): string {
  const mean = editor.float('router/mean', s.mean.subarray(0, d), [d])
  const std = editor.float('router/std', s.std.subarray(0, d), [d])
  return editor.node(
    'Div',
    [editor.node('Sub', [feature, mean], { hint: 'router/centered' }), std],
    {
      hint: 'router/z',
    },
  )
}

/** L2-normalises rows of a [batch, d] tensor (norm floored so a zero row stays zero). */
export function emitL2Normalize(editor: GraphEditor, ops: Ops, x: string, hint: string): string {
  const sq = editor.node('Mul', [x, x], { hint: `${hint}/sq` })
  const norm = editor.node('Sqrt', [ops.reduceSum(sq, [1], true, `${hint}/sumsq`)], {
    hint: `${hint}/norm`,
  })
  const floor = editor.node('Max', [norm, ops.scalar(1e-12, `${hint}/eps`)], {
    hint: `${hint}/den`,
  })
  return editor.node('Div', [x, floor], { hint })
}

/** score / temperature of the data-free router (data-free-router.ts): [batch, d] → [batch, T]. */
function emitDataFree(editor: GraphEditor, ops: Ops, feature: string, r: DataFreeRouter): string {
  const K = r.expertOfColumn.length
  const d = r.basis.length / K
  const T = Math.max(...r.expertOfColumn) + 1
  const onehot = new Float32Array(K * T) // [K, T]: column j belongs to expert e(j)
  r.expertOfColumn.forEach((t, j) => {
    onehot[j * T + t] = 1
  })
  const B =
    r.dtype === 'float16'
      ? editor.node(
          'Cast',
          [editor.initializer(float16Tensor(editor.fresh('router/subspaces'), r.basis, [d, K]))],
          {
            attrs: { to: onnx.TensorProto.DataType.FLOAT },
            hint: 'router/subspaces_f32',
          },
        )
      : editor.float('router/subspaces', r.basis, [d, K])
  const x = editor.node('Sub', [feature, ops.reduceMean(feature, [1], true, 'router/row_mean')], {
    hint: 'router/centred',
  }) // [batch, d]
  const p = editor.node('MatMul', [x, B], { hint: 'router/projection' }) // [batch, K]
  const p2 = editor.node('Mul', [p, p], { hint: 'router/projection_sq' })
  const energy = editor.node(
    'MatMul',
    [p2, editor.float('router/expert_of_column', onehot, [K, T])],
    {
      hint: 'router/energy',
    },
  ) // [batch, T]
  const sq = editor.node('Mul', [x, x], { hint: 'router/x_sq' })
  const xnorm = editor.node('Sqrt', [ops.reduceSum(sq, [1], true, 'router/x_sumsq')], {
    hint: 'router/x_norm',
  })
  const den = editor.node('Max', [xnorm, ops.scalar(1e-12, 'router/eps')], { hint: 'router/den' })
  const score = editor.node(
    'Div',
    [editor.node('Sqrt', [energy], { hint: 'router/energy_norm' }), den],
    { hint: 'router/score' },
  )
  return editor.node('Mul', [score, ops.scalar(1 / r.temperature, 'router/inv_temp')], {
    hint: 'router/logits',
  })
}

/** A router weight matrix: float32, or (recipe `router.dtype: float16`) FLOAT16 behind a Cast onnxruntime folds at load. */
function routerWeight(
  editor: GraphEditor,
  hint: string,
  values: Float32Array,
  dims: number[],
  dtype: 'float32' | 'float16' | undefined,
): string {
  if (dtype !== 'float16') return editor.float(hint, values, dims)
  return editor.node(
    'Cast',
    [editor.initializer(float16Tensor(editor.fresh(hint), values, dims))],
    {
      attrs: { to: onnx.TensorProto.DataType.FLOAT },
      hint: `${hint}_f32`,
    },
  )
}

/**
 * A checked pair table's owners ([bigrams], −1 = empty) as the smallest integer initializer that holds them: int16
 * (2 bytes a bucket) unless an owner ⌊pair / H⌋ exceeds it (H below vocab² / 32,767), else int32.
 */
function ownerTable(editor: GraphEditor, owners: Int32Array): string {
  const narrow = owners.every((q) => q <= 0x7fff)
  const raw = new Uint8Array(owners.length * (narrow ? 2 : 4))
  const view = new DataView(raw.buffer)
  owners.forEach((q, i) => {
    if (narrow) view.setInt16(i * 2, q, true)
    else view.setInt32(i * 4, q, true)
  })
  return editor.initializer({
    name: editor.fresh('router/pair_owners'),
    dataType: narrow ? onnx.TensorProto.DataType.INT16 : onnx.TensorProto.DataType.INT32,
    dims: [owners.length],
    rawData: raw,
  })
}

/** Folds the bag's standardisation into its first-layer rows: W'_j = W_j / std_j, bias shift −Σ mean_j·W'_j. */
function foldBagRows(
  s: Standardizer,
  weight: Float32Array,
  width: number,
  h: number,
): { folded: Float32Array; shift: Float32Array } {
  const d = s.mean.length - width
  const folded = new Float32Array(width * h)
  const shift = new Float64Array(h)
  for (let j = 0; j < width; j++) {
    const sd = s.std[d + j] as number
    const mu = s.mean[d + j] as number
    for (let k = 0; k < h; k++) {
      const w = (weight[(d + j) * h + k] as number) / sd
      folded[j * h + k] = w
      shift[k] = (shift[k] as number) - mu * w
    }
  }
  return { folded, shift: Float32Array.from(shift) }
}

/**
 * The bag of tokens' share of the first layer, never materialising the [batch, vocab] bag: with the bag's
 * standardisation folded into the weights (W'_j = W_j / std_j; the constant −Σ mean_j·W'_j goes into the bias),
 * bag·W' is the mask-weighted mean of W' gathered at each token's id. Returns [batch, h] and the bias shift.
 */
function emitBagOfTokens(
  editor: GraphEditor,
  ops: Ops,
  r: {
    standardizer: Standardizer
    weight: Float32Array
    vocab: number
    h: number
    dtype: 'float32' | 'float16' | undefined
  },
  tokens: { ids: string; mask: string },
): { term: string; shift: Float32Array } {
  const { folded, shift } = foldBagRows(r.standardizer, r.weight, r.vocab, r.h)
  const rows = editor.node(
    'Gather',
    [routerWeight(editor, 'router/bag.weight', folded, [r.vocab, r.h], r.dtype), tokens.ids],
    { attrs: { axis: 0 }, hint: 'router/bag_rows' },
  ) // [batch, seq, h]
  const m = editor.node('Cast', [tokens.mask], {
    attrs: { to: onnx.TensorProto.DataType.FLOAT },
    hint: 'router/bag_mask',
  })
  const sum = ops.reduceSum(
    editor.node('Mul', [rows, ops.unsqueeze(m, [2], 'router/bag_mask_3d')], {
      hint: 'router/bag_masked',
    }),
    [1],
    false,
    'router/bag_sum',
  )
  const count = editor.node(
    'Max',
    [ops.reduceSum(m, [1], true, 'router/bag_count'), ops.scalar(1, 'router/bag_one')],
    { hint: 'router/bag_den' },
  )
  return { term: editor.node('Div', [sum, count], { hint: 'router/bag' }), shift }
}

/** w / max(Σ w, 1) per row of a [batch, n] float tensor: the weights of a masked mean. */
function meanWeights(editor: GraphEditor, ops: Ops, valid: string, hint: string): string {
  const den = editor.node(
    'Max',
    [ops.reduceSum(valid, [1], true, `${hint}_count`), ops.scalar(1, `${hint}_one`)],
    { hint: `${hint}_den` },
  )
  return editor.node('Div', [valid, den], { hint })
}

/**
 * The bag's pair columns: key vocab + (id_p · vocab + id_{p+1}) mod bigrams per adjacent pair of positions (in
 * int64), valid where both tokens are real (and, for checked buckets, where the bucket holds that pair).
 */
function emitPairKeys(
  editor: GraphEditor,
  ops: Ops,
  bag: BagSpec,
  ids: string,
  m: string,
): { keys: string; valid: string } {
  const { vocab, bigrams } = bag
  const END = 2 ** 31 - 1
  const left = ops.slice(ids, 1, 0, -1, 'router/pair_left')
  const right = ops.slice(ids, 1, 1, END, 'router/pair_right')
  const pair = editor.node(
    'Add',
    [
      editor.node('Mul', [left, editor.int64('router/pair_vocab', [vocab], [])], {
        hint: 'router/pair_scaled',
      }),
      right,
    ],
    { hint: 'router/pair' },
  ) // [batch, seq − 1] int64, ≥ 0
  // pair mod H as pair − ⌊pair / H⌋·H: integer Div floors non-negative int64 at every opset (Mod needs 10).
  const H = editor.int64('router/pair_buckets', [bigrams], [])
  const quotient = editor.node('Div', [pair, H], { hint: 'router/pair_div' })
  const bucket = editor.node(
    'Sub',
    [pair, editor.node('Mul', [quotient, H], { hint: 'router/pair_floor' })],
    { hint: 'router/pair_bucket' },
  )
  let valid = editor.node(
    'Mul',
    [
      ops.slice(m, 1, 0, -1, 'router/pair_mask_left'),
      ops.slice(m, 1, 1, END, 'router/pair_mask_right'),
    ],
    { hint: 'router/pair_valid' },
  )
  if (bag.owners) {
    // Checked buckets: the pair counts only where the bucket's owner ⌊pair / H⌋ is its own.
    const owner = editor.node(
      'Cast',
      [
        editor.node('Gather', [ownerTable(editor, bag.owners), bucket], {
          attrs: { axis: 0 },
          hint: 'router/pair_owner',
        }),
      ],
      { attrs: { to: onnx.TensorProto.DataType.INT64 }, hint: 'router/pair_owner_i64' },
    )
    const own = editor.node(
      'Cast',
      [editor.node('Equal', [owner, quotient], { hint: 'router/pair_own' })],
      { attrs: { to: onnx.TensorProto.DataType.FLOAT }, hint: 'router/pair_own_f' },
    )
    valid = editor.node('Mul', [valid, own], { hint: 'router/pair_valid_owned' })
  }
  return {
    keys: editor.node('Add', [bucket, editor.int64('router/pair_offset', [vocab], [])], {
      hint: 'router/pair_key',
    }),
    valid,
  }
}

/**
 * The bag of tokens with hashed token pairs and/or tf-idf weights (recipe `bag_bigrams`, `bag_weighting`), as
 * features.ts `bagOfTokens` computes it, never materialised: every position p of the ids (and every pair of
 * adjacent positions, key vocab + (id_p · vocab + id_{p+1}) mod bigrams, in int64) gets a weight w_p, and the
 * bag's first-layer share is Σ_p w_p · W'[key_p]. `mean`: w_p = valid_p / Σ valid (ids and pairs apart). `tfidf`:
 * with c_p the number of valid positions whose key is key_p (Equal of the keys with themselves, masked, summed),
 * w_p = valid_p · idf[key_p] · (1 + ln c_p) / c_p, so the c_p positions of one key add up to (1 + ln c)·idf; the
 * row's squared norm Σ_keys ((1 + ln c)·idf)² is Σ_p w_p² · c_p, and w is divided by its square root.
 */
function emitWeightedBag(
  editor: GraphEditor,
  ops: Ops,
  r: {
    standardizer: Standardizer
    weight: Float32Array
    bag: BagSpec
    h: number
    dtype: 'float32' | 'float16' | undefined
  },
  tokens: { ids: string; mask: string },
): { term: string; shift: Float32Array } {
  const { vocab, bigrams, weighting } = r.bag
  const width = vocab + bigrams
  const { folded, shift } = foldBagRows(r.standardizer, r.weight, width, r.h)
  const m = editor.node('Cast', [tokens.mask], {
    attrs: { to: onnx.TensorProto.DataType.FLOAT },
    hint: 'router/bag_mask',
  }) // [batch, seq]
  const parts: { keys: string; valid: string }[] = [{ keys: tokens.ids, valid: m }]
  if (bigrams > 0) parts.push(emitPairKeys(editor, ops, r.bag, tokens.ids, m))
  const concat = (xs: string[], hint: string) =>
    xs.length === 1 ? (xs[0] as string) : editor.node('Concat', xs, { attrs: { axis: 1 }, hint })
  const keys = concat(
    parts.map((p) => p.keys),
    'router/bag_keys',
  ) // [batch, L] int64
  let w: string // [batch, L]
  if (weighting === 'mean')
    w = concat(
      parts.map((p, i) => meanWeights(editor, ops, p.valid, `router/bag_w${i}`)),
      'router/bag_w',
    )
  else {
    const valid = concat(
      parts.map((p) => p.valid),
      'router/bag_valid',
    )
    if (r.bag.idf?.length !== width) throw new Error(`a tf-idf bag needs ${width} idf values`)
    const same = editor.node(
      'Cast',
      [
        editor.node(
          'Equal',
          [
            ops.unsqueeze(keys, [2], 'router/bag_keys_col'),
            ops.unsqueeze(keys, [1], 'router/bag_keys_row'),
          ],
          { hint: 'router/bag_same' },
        ),
      ],
      { attrs: { to: onnx.TensorProto.DataType.FLOAT }, hint: 'router/bag_same_f' },
    ) // [batch, L, L]
    const count = ops.reduceSum(
      editor.node('Mul', [same, ops.unsqueeze(valid, [1], 'router/bag_valid_row')], {
        hint: 'router/bag_same_valid',
      }),
      [2],
      false,
      'router/bag_tf',
    ) // [batch, L]
    const c = editor.node('Max', [count, ops.scalar(1, 'router/bag_one')], {
      hint: 'router/bag_tf_den',
    })
    const tf = editor.node(
      'Div',
      [
        editor.node(
          'Add',
          [editor.node('Log', [c], { hint: 'router/bag_log_tf' }), ops.scalar(1)],
          {
            hint: 'router/bag_sublinear',
          },
        ),
        c,
      ],
      { hint: 'router/bag_tf_share' },
    )
    const idf = editor.node(
      'Gather',
      [routerWeight(editor, 'router/bag.idf', r.bag.idf, [width], r.dtype), keys],
      { attrs: { axis: 0 }, hint: 'router/bag_idf' },
    )
    const w0 = editor.node(
      'Mul',
      [editor.node('Mul', [valid, idf], { hint: 'router/bag_valid_idf' }), tf],
      { hint: 'router/bag_w_raw' },
    )
    const sq = ops.reduceSum(
      editor.node('Mul', [editor.node('Mul', [w0, w0], { hint: 'router/bag_w_sq' }), count], {
        hint: 'router/bag_w_sq_c',
      }),
      [1],
      true,
      'router/bag_norm_sq',
    )
    const norm = editor.node(
      'Sqrt',
      [editor.node('Max', [sq, ops.scalar(TFIDF_NORM_FLOOR, 'router/bag_floor')])],
      { hint: 'router/bag_norm' },
    )
    w = editor.node('Div', [w0, norm], { hint: 'router/bag_w' })
  }
  const rows = editor.node(
    'Gather',
    [routerWeight(editor, 'router/bag.weight', folded, [width, r.h], r.dtype), keys],
    { attrs: { axis: 0 }, hint: 'router/bag_rows' },
  ) // [batch, L, h]
  const term = ops.reduceSum(
    editor.node('Mul', [rows, ops.unsqueeze(w, [2], 'router/bag_w_3d')], {
      hint: 'router/bag_weighted',
    }),
    [1],
    false,
    'router/bag',
  )
  return { term, shift }
}

function emitMlp(
  editor: GraphEditor,
  ops: Ops,
  feature: string,
  router: Extract<RouterModel, { kind: 'mlp' }>,
  tokens: { ids: string; mask: string } | undefined,
): string {
  const spec = router.bag
  const vocab = spec ? spec.vocab + (spec.bigrams ?? 0) : 0
  if (vocab > 0 && !tokens)
    throw new Error('a router trained on the bag of tokens needs the ids and mask inputs')
  const d = router.standardizer.mean.length - vocab
  let h = standardize(editor, feature, router.standardizer, d)
  const { sizes, layers } = router.mlp
  layers.forEach((layer, i) => {
    const nOut = sizes[i + 1] as number
    const plain = !spec?.bigrams && (spec?.weighting ?? 'mean') === 'mean'
    const bag =
      i === 0 && spec && tokens
        ? plain
          ? emitBagOfTokens(
              editor,
              ops,
              {
                standardizer: router.standardizer,
                weight: layer.weight,
                vocab,
                h: nOut,
                dtype: router.dtype,
              },
              tokens,
            )
          : emitWeightedBag(
              editor,
              ops,
              {
                standardizer: router.standardizer,
                weight: layer.weight,
                bag: { bigrams: 0, weighting: 'mean', ...spec },
                h: nOut,
                dtype: router.dtype,
              },
              tokens,
            )
        : undefined
    const nIn = (sizes[i] as number) - (bag ? vocab : 0)
    const W = routerWeight(
      editor,
      `router/fc${i + 1}.weight`,
      layer.weight.subarray(0, nIn * nOut),
      [nIn, nOut],
      router.dtype,
    )
    const bias = bag ? layer.bias.map((v, k) => v + (bag.shift[k] as number)) : layer.bias
    const b = editor.float(`router/fc${i + 1}.bias`, bias, [nOut])
    let y = editor.node('MatMul', [h, W], { hint: `router/fc${i + 1}` })
    if (bag) y = editor.node('Add', [y, bag.term], { hint: `router/fc${i + 1}_bag` })
    h = editor.node('Add', [y, b], { hint: `router/fc${i + 1}_out` })
    if (i + 1 < layers.length) h = editor.node('Relu', [h], { hint: `router/relu${i + 1}` })
  })
  if (router.sharpness !== undefined && router.sharpness !== 1)
    h = editor.node('Mul', [h, ops.scalar(router.sharpness, 'router/sharpness')], {
      hint: 'router/sharpened',
    })
  return ops.softmax(h, 'router/probs')
}

export function routerEmitter(router: RouterModel): RouterEmitter {
  return (editor, ops, feature, tokens) => {
    // No data, no standardiser: the scores read the feature as the matrix does.
    if (router.kind === 'data-free')
      return ops.softmax(emitDataFree(editor, ops, feature, router), 'router/probs')
    if (router.kind === 'mlp') return emitMlp(editor, ops, feature, router, tokens)
    const z = standardize(editor, feature, router.standardizer)
    const d = router.standardizer.mean.length
    const T = router.prototypes.length / d
    const zn = emitL2Normalize(editor, ops, z, 'router/unit')
    const P = editor.float('router/prototypes', router.prototypes, [d, T])
    const cos = editor.node('MatMul', [zn, P], { hint: 'router/cosine' })
    const scaled = editor.node(
      'Mul',
      [cos, ops.scalar(1 / router.temperature, 'router/inv_temp')],
      {
        hint: 'router/logits',
      },
    )
    return ops.softmax(scaled, 'router/probs')
  }
}
