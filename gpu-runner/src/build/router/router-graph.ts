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
      /** The feature's last `vocab` columns are the bag of tokens (recipe `router.bag_of_tokens`). */
      bag?: { vocab: number }
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
  const { standardizer: s, weight, vocab, h } = r
  const d = s.mean.length - vocab
  const folded = new Float32Array(vocab * h)
  const shift = new Float64Array(h)
  for (let j = 0; j < vocab; j++) {
    const sd = s.std[d + j] as number
    const mu = s.mean[d + j] as number
    for (let k = 0; k < h; k++) {
      const w = (weight[(d + j) * h + k] as number) / sd
      folded[j * h + k] = w
      shift[k] = (shift[k] as number) - mu * w
    }
  }
  const rows = editor.node(
    'Gather',
    [routerWeight(editor, 'router/bag.weight', folded, [vocab, h], r.dtype), tokens.ids],
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
  return {
    term: editor.node('Div', [sum, count], { hint: 'router/bag' }),
    shift: Float32Array.from(shift),
  }
}

function emitMlp(
  editor: GraphEditor,
  ops: Ops,
  feature: string,
  router: Extract<RouterModel, { kind: 'mlp' }>,
  tokens: { ids: string; mask: string } | undefined,
): string {
  const vocab = router.bag?.vocab ?? 0
  if (vocab > 0 && !tokens)
    throw new Error('a router trained on the bag of tokens needs the ids and mask inputs')
  const d = router.standardizer.mean.length - vocab
  let h = standardize(editor, feature, router.standardizer, d)
  const { sizes, layers } = router.mlp
  layers.forEach((layer, i) => {
    const nOut = sizes[i + 1] as number
    const bag =
      i === 0 && vocab > 0 && tokens
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
