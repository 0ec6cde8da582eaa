/**
 * Step 1 of the rewrite: the router, reading the shared model's value of the feature tensor. When that tensor
 * depends on a node that gets a correction, the nodes computing it are copied under `router/` names, so that the
 * router sees shared-model features (as Twin-Merging's router does) and the graph stays acyclic. A feature of
 * rank > 2 is mean-pooled per row over every axis but the batch's and the last, wherever the batch is, or (text
 * models, `router.pooling: masked`) over the real tokens by the attention mask; several features are
 * concatenated.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { type INodeProto, onnx } from '../../onnx/proto.ts'
import { isAlone, type RowLayout, type TensorLayout } from '../graph/row-layout.ts'
import { featureRows } from '../router/features.ts'
import type { RewriteContext } from './rewrite-context.ts'

/** Nodes (indices) that any of `tensors` depends on, in graph order. */
function ancestors(nodes: readonly INodeProto[], tensors: readonly string[]): number[] {
  const producer = new Map<string, number>()
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) producer.set(o, i)
  })
  const seen = new Set<number>()
  const stack = [...tensors]
  while (stack.length > 0) {
    const t = stack.pop() as string
    const p = producer.get(t)
    if (p === undefined || seen.has(p)) continue
    seen.add(p)
    for (const x of nodes[p]?.input ?? []) if (x) stack.push(x)
  }
  return [...seen].sort((a, b) => a - b)
}

/**
 * Copies the features' ancestors (once, however many features share them) under `router/` names when any of
 * them gets a correction. Returns each feature's name in the graph.
 */
function sharedModelFeatures(ctx: RewriteContext, features: readonly string[]): string[] {
  const { editor, original } = ctx
  const up = ancestors(original, features)
  if (!up.some((i) => ctx.corrected.has(i))) return [...features]
  const renamed = new Map<string, string>()
  for (const i of up)
    for (const o of original[i]?.output ?? []) if (o) renamed.set(o, editor.fresh(`router/${o}`))
  for (const i of up) {
    const n = original[i] as INodeProto
    editor.addNode({
      ...n,
      name: editor.fresh(`router/${n.name ?? i}`),
      input: (n.input ?? []).map((x) => renamed.get(x) ?? x),
      output: (n.output ?? []).map((o) => (o ? (renamed.get(o) ?? o) : o)),
    })
  }
  return features.map((f) => renamed.get(f) ?? f)
}

/**
 * [.., n, ..] with n = outer·batch·inner on the batch's axis → [.., outer, batch, inner, ..]: the batch on an axis
 * of its own, so that pooling can keep it. The batch size comes from a graph input whose axis 0 is the batch.
 */
function splitBatchAxis(ctx: RewriteContext, x: string, layout: RowLayout): string {
  const { editor, ops } = ctx
  const shape = editor.node('Shape', [x], { hint: 'router/feature_shape' })
  const b = ops.slice(
    editor.node('Shape', [ctx.options.batchInput], { hint: 'router/input_shape' }),
    0,
    0,
    1,
    'router/batch',
  )
  const n = ops.slice(shape, 0, layout.axis, layout.axis + 1, 'router/n')
  const known = layout.outer.fixed ? layout.outer : layout.inner
  const fixed = editor.int64('router/fixed', [known.size])
  const other = editor.node('Div', [n, editor.node('Mul', [b, fixed], { hint: 'router/bf' })], {
    hint: 'router/other',
  })
  const [outer, inner] = layout.outer.fixed ? [fixed, other] : [other, fixed]
  const parts = [
    ...(layout.axis > 0 ? [ops.slice(shape, 0, 0, layout.axis, 'router/before')] : []),
    outer,
    b,
    inner,
    ops.slice(shape, 0, layout.axis + 1, layout.rank, 'router/after'),
  ]
  const split = editor.node('Concat', parts, { attrs: { axis: 0 }, hint: 'router/split_shape' })
  return editor.node('Reshape', [x, split], { hint: 'router/split' })
}

/**
 * The feature as [batch, d]: the mean over every axis but the batch's and the last (a no-op for [batch, d]).
 * This is what the router was trained on (router/features.ts pools the same way on the host).
 */
function poolPerRow(
  ctx: RewriteContext,
  name: string,
  feature: string,
  given: TensorLayout,
): string {
  const layout = featureRows(name, given)
  const alone = isAlone(layout)
  const x = alone ? feature : splitBatchAxis(ctx, feature, layout)
  const rank = alone ? layout.rank : layout.rank + 2
  const keep = alone ? layout.axis : layout.axis + 1
  const axes = Array.from({ length: rank - 1 }, (_, i) => i).filter((i) => i !== keep)
  return axes.length === 0 ? x : ctx.ops.reduceMean(x, axes, false, 'router/pool')
}

/** The attention mask as float [batch, seq, 1] and its row sums floored at 1, [batch, 1] (emitted once). */
function maskWeights(ctx: RewriteContext, mask: string): { m: string; count: string } {
  const { editor, ops } = ctx
  const f = editor.node('Cast', [mask], {
    attrs: { to: onnx.TensorProto.DataType.FLOAT },
    hint: 'router/mask_f32',
  })
  const count = editor.node(
    'Max',
    [ops.reduceSum(f, [1], true, 'router/mask_count'), ops.scalar(1, 'router/one')],
    { hint: 'router/mask_den' },
  )
  return { m: ops.unsqueeze(f, [2], 'router/mask_3d'), count }
}

/**
 * `router.pooling: masked`: the mean of a batch-leading [batch, seq, d] feature over the positions whose mask is
 * 1, Σ mask·x / max(Σ mask, 1) (router/features.ts poolMasked on the host); a [batch, d] feature as it is.
 */
function poolMasked(
  ctx: RewriteContext,
  name: string,
  feature: string,
  given: TensorLayout,
  mask: () => { m: string; count: string },
): string {
  const layout = featureRows(name, given)
  if (layout.rank === 2 && layout.axis === 0 && isAlone(layout)) return feature
  if (layout.rank !== 3 || layout.axis !== 0 || !isAlone(layout))
    throw new AppError(
      'INVALID_REQUEST',
      `router.pooling masked: feature '${name}' must be [batch, seq, d] with the batch on axis 0 (rank ${layout.rank}, batch on axis ${layout.axis})`,
    )
  const { editor, ops } = ctx
  const w = mask()
  const sum = ops.reduceSum(
    editor.node('Mul', [feature, w.m], { hint: 'router/masked' }),
    [1],
    false,
    'router/masked_sum',
  )
  return editor.node('Div', [sum, w.count], { hint: 'router/masked_pool' })
}

/**
 * Emits the router on the shared model's features.
 * @returns the router's [batch, T] probabilities, and the index of its first node in graph.node (everything
 * from there on computes only the router, which step 2 moves behind the router gate)
 */
export function emitRouter(ctx: RewriteContext): { probs: string; firstNode: number } {
  const { options, editor, ops } = ctx
  const firstNode = (editor.graph.node ?? []).length
  const all = [options.feature, ...(options.extraFeatures ?? [])]
  const tensors = sharedModelFeatures(
    ctx,
    all.map((f) => f.tensor),
  )
  let weights: { m: string; count: string } | undefined
  const maskInput = options.poolingMask
  const pooled = all.map((f, i) =>
    maskInput === undefined
      ? poolPerRow(ctx, f.tensor, tensors[i] as string, f.layout)
      : poolMasked(ctx, f.tensor, tensors[i] as string, f.layout, () => {
          weights ??= maskWeights(ctx, maskInput)
          return weights
        }),
  )
  const feature =
    pooled.length === 1
      ? (pooled[0] as string)
      : editor.node('Concat', pooled, { attrs: { axis: 1 }, hint: 'router/features' })
  return { probs: options.router(editor, ops, feature, options.bag), firstNode }
}
