/**
 * Top-k gather folds a Linear layer's bias correction into its matrix correction (issue #18). The correction of
 * `Y = X·W + b` has two terms, ((X·Ugᵀ) ⊙ s)·Vg and w·Δb; added one after the other to the [batch, seq, d_out]
 * output they cost two passes over it (one Add each), the second for a [batch, 1, d_out] term. With each expert's
 * bias delta stored as one more row of its Vᵀ table (r + 1 rows per expert), and a 1 added to the matching column
 * of X·Ugᵀ (the U table's row there is 0), the gathered product carries w·Δb and one Add remains:
 *   ΔY + w·Δb = ((X·Ugᵀ + e) ⊙ s)·[Vg; Δb_g],  e = 1 at each expert's extra column, 0 elsewhere
 * A zero weight still gives a zero term, so all-zero weights still give the shared model bit for bit.
 * Folded: a matrix with one use, a MatMul by W as stored whose correction lands on the bias `Add` right after it
 * (correction-targets.ts), where the bias is an exclusive vector of the output's size used there.
 * @module
 */
import { TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import type { VectorFactors } from '../../factors/exclusive-factors.ts'
import type { GraphEditor } from '../graph/graph-editor.ts'
import type { RewriteContext } from './rewrite-context.ts'

export interface FoldedBiases {
  /** Matrix name → the bias vector whose correction its gathered product carries. */
  readonly byMatrix: ReadonlyMap<string, VectorFactors>
  /** True when use `k` of vector `name` is carried by a matrix correction (step 5 skips it). */
  folded(name: string, k: number): boolean
}

/** The biases step 4 folds (none without top-k gather). */
export function foldedBiases(ctx: RewriteContext): FoldedBiases {
  const byMatrix = new Map<string, VectorFactors>()
  const uses = new Set<string>()
  const result = { byMatrix, folded: (name: string, k: number) => uses.has(`${name}|${k}`) }
  if (ctx.gatherK === undefined) return result
  const vectors = new Map(ctx.options.vectors.map((v) => [v.name, v]))
  for (const m of ctx.options.matrices) {
    const site = ctx.options.sites.get(m.name)
    if (site?.kind !== 'matrix' || site.uses.length !== 1) continue
    const use = site.uses[0]
    const target = ctx.targets.get(m.name)?.[0]
    if (use?.op !== 'MatMul' || use.transposed || target === undefined) continue
    const add = ctx.original[target]
    if (target === use.node || add?.opType !== 'Add') continue
    const y = ctx.original[use.node]?.output?.[0]
    const bias = (add.input ?? []).find((i) => i !== y) ?? ''
    const v = vectors.get(bias)
    const vSite = ctx.options.sites.get(bias)
    if (!v || vSite?.kind !== 'vector' || v.size !== m.cols) continue
    const k = vSite.uses.findIndex((u) => u.node === target && u.op === 'Add')
    if (k < 0 || (ctx.targets.get(bias) ?? [])[k] !== target || uses.has(`${bias}|${k}`)) continue
    uses.add(`${bias}|${k}`)
    byMatrix.set(m.name, v)
  }
  return result
}

const deltas = new WeakMap<GraphEditor, Map<string, string>>()

/** A vector's deltas [T, d] under the convention name `<p>.twin_delta`, stored once whichever step asks first. */
export function vectorDelta(ctx: RewriteContext, v: VectorFactors): string {
  let m = deltas.get(ctx.editor)
  if (!m) {
    m = new Map()
    deltas.set(ctx.editor, m)
  }
  const hit = m.get(v.name)
  if (hit) return hit
  const D = ctx.editor.float(
    `${v.name}${TWIN_FACTOR_SUFFIXES.delta}`,
    v.delta,
    [ctx.experts, v.size],
    true,
  )
  m.set(v.name, D)
  return D
}
