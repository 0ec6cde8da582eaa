/**
 * Routers as graph fragments, embedded in the twin graph so that one run does route → merge → infer.
 * The first two standardise the [batch, d] feature with the training split's mean and std first.
 * - MLP (Twin-Merging's router): ReLU layers, softmax over the T experts.
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
  | { kind: 'mlp'; standardizer: Standardizer; mlp: MlpWeights }
  | DataFreeRouter
  | {
      kind: 'prototype'
      standardizer: Standardizer
      /** [d, T] column t = expert t's mean standardised feature, L2-normalised. */
      prototypes: Float32Array
      temperature: number
    }

function standardize(editor: GraphEditor, feature: string, s: Standardizer): string {
  const d = s.mean.length
  const mean = editor.float('router/mean', s.mean, [d])
  const std = editor.float('router/std', s.std, [d])
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

export function routerEmitter(router: RouterModel): RouterEmitter {
  return (editor, ops, feature) => {
    // No data, no standardiser: the scores read the feature as the matrix does.
    if (router.kind === 'data-free')
      return ops.softmax(emitDataFree(editor, ops, feature, router), 'router/probs')
    const z = standardize(editor, feature, router.standardizer)
    if (router.kind === 'mlp') {
      let h = z
      const { sizes, layers } = router.mlp
      layers.forEach((layer, i) => {
        const nIn = sizes[i] as number
        const nOut = sizes[i + 1] as number
        const W = editor.float(`router/fc${i + 1}.weight`, layer.weight, [nIn, nOut])
        const b = editor.float(`router/fc${i + 1}.bias`, layer.bias, [nOut])
        h = editor.node('Add', [editor.node('MatMul', [h, W], { hint: `router/fc${i + 1}` }), b], {
          hint: `router/fc${i + 1}_out`,
        })
        if (i + 1 < layers.length) h = editor.node('Relu', [h], { hint: `router/relu${i + 1}` })
      })
      return ops.softmax(h, 'router/probs')
    }
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
