/**
 * Step 5 of the rewrite: for every use of an exclusive vector p (deltas Δp [T, d]) the node's output gets the
 * term its op implies for p_s + w·Δp: `+ w·Δp` for Add and LayerNormalization's bias, `− w·Δp` for the
 * subtrahend of Sub, `x ⊙ (w·Δp)` for Mul, `LN(x; 1, 0) ⊙ (w·Δγ)` for LayerNormalization's scale, `β·(w·Δc)`
 * for Gemm's C.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { VectorFactors } from '../../factors/exclusive-factors.ts'
import type { INodeProto } from '../../onnx/proto.ts'
import { floatAttr, intAttr, type VectorUse } from '../graph/weight-sites.ts'
import type { Corrections } from './corrections.ts'
import { type FoldedBiases, vectorDelta } from './folded-biases.ts'
import type { RewriteContext } from './rewrite-context.ts'

/** LayerNormalization's input normalised with unit scale and no bias: one per node, shared by its uses. */
function unitNormalized(
  ctx: RewriteContext,
  cache: Map<number, string>,
  v: VectorFactors,
  use: VectorUse,
  n: INodeProto,
): string {
  const hit = cache.get(use.node)
  if (hit) return hit
  const { editor } = ctx
  const ones = editor.float(`${v.name}/ones`, new Float32Array(v.size).fill(1), [v.size])
  const norm = editor.node('LayerNormalization', [n.input?.[0] ?? '', ones], {
    attrs: {
      axis: intAttr(n, 'axis', -1),
      epsilon: floatAttr(n, 'epsilon', 1e-5),
      stash_type: intAttr(n, 'stash_type', 1),
    },
    hint: `${v.name}/normalized`,
  })
  cache.set(use.node, norm)
  return norm
}

/** The correction one use of `v` adds to its node's output, given w·Δp broadcast to that output. */
function vectorTerm(
  ctx: RewriteContext,
  normalized: Map<number, string>,
  v: VectorFactors,
  use: VectorUse,
  delta: string,
): string {
  const { editor, ops } = ctx
  const n = ctx.original[use.node] as INodeProto
  switch (use.op) {
    case 'Add':
      return delta
    case 'Sub':
      return use.slot === 0 ? delta : editor.node('Neg', [delta], { hint: `${v.name}/neg` })
    case 'Mul': {
      const other = n.input?.[1 - use.slot] ?? ''
      return editor.node('Mul', [other, delta], { hint: `${v.name}/scale` })
    }
    case 'LayerNormalization': {
      if (use.slot === 2) return delta
      const norm = unitNormalized(ctx, normalized, v, use, n)
      return editor.node('Mul', [norm, delta], { hint: `${v.name}/scale` })
    }
    case 'Gemm': {
      const beta = floatAttr(n, 'beta', 1)
      return beta === 1
        ? delta
        : editor.node('Mul', [delta, ops.scalar(beta)], { hint: `${v.name}/beta` })
    }
  }
}

/** @param folded the bias uses whose terms a matrix correction already carries (folded-biases.ts) */
export function emitVectorCorrections(
  ctx: RewriteContext,
  weights: string,
  corrections: Corrections,
  folded: FoldedBiases,
): void {
  const { editor, experts: T } = ctx
  const normalized = new Map<number, string>()
  for (const v of ctx.options.vectors) {
    const site = ctx.options.sites.get(v.name)
    if (site?.kind !== 'vector') continue
    if (v.delta.length !== T * v.size)
      throw new AppError('INVALID_MODEL', `delta of '${v.name}' is not [${T}, ${v.size}]`)
    const D = vectorDelta(ctx, v)
    const uses = site.uses
      .map((use, k) => ({ use, k }))
      .filter(({ k }) => !folded.folded(v.name, k))
    if (uses.length === 0) continue
    const dp = editor.node('MatMul', [weights, D], { hint: `${v.name}/delta` }) // [batch, d]
    const targets = ctx.targets.get(v.name) ?? []
    for (const { use, k } of uses) {
      const target = targets[k] ?? use.node
      const aligned = corrections.alignRows(dp, target)
      corrections.add(target, vectorTerm(ctx, normalized, v, use, aligned))
    }
  }
}
