/**
 * Step 1 of the rewrite: the router, reading the shared model's value of the feature tensor. When that tensor
 * depends on a node that gets a correction, the nodes computing it are copied under `router/` names, so that the
 * router sees shared-model features (as Twin-Merging's router does) and the graph stays acyclic. A feature of
 * rank > 2 ([batch, …, d]) is mean-pooled over its middle axes.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { INodeProto } from '../../onnx/proto.ts'
import type { RewriteContext } from './rewrite-context.ts'

/** Nodes (indices) that `tensor` depends on, in graph order. */
function ancestors(nodes: readonly INodeProto[], tensor: string): number[] {
  const producer = new Map<string, number>()
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) producer.set(o, i)
  })
  const seen = new Set<number>()
  const stack = [tensor]
  while (stack.length > 0) {
    const t = stack.pop() as string
    const p = producer.get(t)
    if (p === undefined || seen.has(p)) continue
    seen.add(p)
    for (const x of nodes[p]?.input ?? []) if (x) stack.push(x)
  }
  return [...seen].sort((a, b) => a - b)
}

/** Copies the feature's ancestors under `router/` names when any of them gets a correction. */
function sharedModelFeature(ctx: RewriteContext, feature: string): string {
  const { editor, original } = ctx
  const up = ancestors(original, feature)
  if (!up.some((i) => ctx.corrected.has(i))) return feature
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
  return renamed.get(feature) ?? feature
}

/**
 * Emits the router on the shared model's features.
 * @returns the router's [batch, T] probabilities, and the index of its first node in graph.node (everything
 * from there on computes only the router, which step 2 moves behind the router gate)
 */
export function emitRouter(ctx: RewriteContext): { probs: string; firstNode: number } {
  const { options, editor, ops } = ctx
  const firstNode = (editor.graph.node ?? []).length
  let feature = sharedModelFeature(ctx, options.feature.tensor)
  const layout = options.feature.layout
  if (layout.mode !== 'lead' || layout.rank < 2)
    throw new AppError(
      'INVALID_REQUEST',
      `router feature '${options.feature.tensor}' must have shape [batch, ..., d] (got rank ${layout.rank}, ${layout.mode === 'flat' ? 'batch flattened into rows' : 'no batch axis'})`,
    )
  if (layout.rank > 2)
    feature = ops.reduceMean(
      feature,
      Array.from({ length: layout.rank - 2 }, (_, i) => i + 1),
      false,
      'router/pool',
    )
  return { probs: options.router(editor, ops, feature), firstNode }
}
