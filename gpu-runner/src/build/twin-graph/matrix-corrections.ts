/**
 * Step 4 of the rewrite: for every use of an exclusive matrix W (stored [rows, cols], factors stacked over
 * experts into U [rows, R], Vᵀ [R, cols]) the node's output gets
 *   ΔY = ((X·U) ⊙ s(w))·Vᵀ,  s(w) = Gather(w, expert_of_rank) ⊙ σ   // s: [batch, R]
 * with the roles of U and Vᵀ swapped when the node uses Wᵀ, scaled by Gemm's alpha. The factors are stored under
 * the naming convention (shared/src/schemas/twin-package.ts). With top-k gather the graph gathers each row's
 * experts' factors instead of multiplying by all of them (topk-gather.ts). A matrix stored as a basis shared by
 * the experts gets its own formulation (basis-corrections.ts).
 * @module
 */
import { AppError, TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import type { MatrixFactors } from '../../factors/exclusive-factors.ts'
import { int8Tensor, quantizeFactors } from '../../factors/int8-factors.ts'
import { float16Tensor } from '../../onnx/float16.ts'
import { type INodeProto, onnx } from '../../onnx/proto.ts'
import { floatAttr, intAttr, type MatrixUse } from '../graph/weight-sites.ts'
import { emitBasisCorrections } from './basis-corrections.ts'
import type { Corrections } from './corrections.ts'
import type { ExpertWeights } from './expert-weights.ts'
import { type FoldedBiases, vectorDelta } from './folded-biases.ts'
import type { RewriteContext } from './rewrite-context.ts'
import { gatherMatrix, padExpertMajor } from './topk-gather.ts'

/** Graph tensors of one matrix's factors: U [rows, R] and Vᵀ [R, cols] as float32, σ and expert of rank [R]. */
interface StoredFactors {
  u: string
  vt: string
  sigma: string
  expertOfRank: string
}

/** A factor under its convention name; stored as float16 or int8, the float32 tensor the graph computes with is a Cast. */
function storeFactor(
  ctx: RewriteContext,
  name: string,
  data: Float32Array | Int8Array,
  dims: readonly number[],
): string {
  const { editor } = ctx
  if (data instanceof Int8Array) editor.initializer(int8Tensor(editor.claim(name), data, dims))
  else if (ctx.options.factorDtype === 'float16')
    editor.initializer(float16Tensor(editor.claim(name), data, dims))
  else return editor.float(name, data, dims, true)
  return editor.node('Cast', [name], {
    attrs: { to: onnx.TensorProto.DataType.FLOAT },
    hint: `${name}/f32`,
  })
}

function storeFactors(ctx: RewriteContext, m: MatrixFactors): StoredFactors {
  const R = m.sigma.length
  const S = TWIN_FACTOR_SUFFIXES
  // int8: per-rank scales folded into σ (factors/int8-factors.ts), so the graph is the float16 one.
  const q =
    ctx.options.factorDtype === 'int8'
      ? quantizeFactors(m.u, m.vt, m.sigma, m.rows, m.cols)
      : { u: m.u, vt: m.vt, sigma: m.sigma }
  return {
    u: storeFactor(ctx, `${m.name}${S.u}`, q.u, [m.rows, R]), // [rows, R]
    vt: storeFactor(ctx, `${m.name}${S.v}`, q.vt, [R, m.cols]), // [R, cols]
    sigma: ctx.editor.float(`${m.name}${S.sigma}`, q.sigma, [R], true),
    expertOfRank: ctx.editor.int64(`${m.name}${S.expertOfRank}`, [...m.expertOfRank], [R], true),
  }
}

function checkShape(m: MatrixFactors): void {
  const R = m.sigma.length
  if (m.u.length !== m.rows * R || m.vt.length !== R * m.cols || m.expertOfRank.length !== R)
    throw new AppError(
      'INVALID_MODEL',
      `factors of '${m.name}' do not match [${m.rows}, ${m.cols}] at rank ${R}`,
    )
}

/** The activation a use multiplies with the weight, as [batch, cols] (Gemm's transA undone). */
function activationOf(ctx: RewriteContext, n: INodeProto, use: MatrixUse, name: string): string {
  const x = n.input?.[0] ?? ''
  if (use.op !== 'Gemm' || intAttr(n, 'transA', 0) !== 1) return x
  return ctx.editor.node('Transpose', [x], { attrs: { perm: [1, 0] }, hint: `${name}/a_t` })
}

/** Each use of matrix `name`: the use, its node, and the index of the node whose output gets the correction. */
function usesOf(ctx: RewriteContext, name: string) {
  const site = ctx.options.sites.get(name)
  const targets = ctx.targets.get(name) ?? []
  return (site?.kind === 'matrix' ? site.uses : []).map((use, k) => ({
    use,
    node: ctx.original[use.node] as INodeProto,
    target: targets[k] ?? use.node,
  }))
}

/** Gemm computes alpha·A·B: the correction of its B is scaled alike. */
function scaledByAlpha(
  ctx: RewriteContext,
  n: INodeProto,
  use: MatrixUse,
  c: string,
  name: string,
) {
  const alpha = use.op === 'Gemm' ? floatAttr(n, 'alpha', 1) : 1
  if (alpha === 1) return c
  return ctx.editor.node('Mul', [c, ctx.ops.scalar(alpha)], { hint: `${name}/alpha` })
}

/** s(w) = w[expert_of_rank] ⊙ σ: each rank column's weight for each row. */
function rankWeights(ctx: RewriteContext, name: string, stored: StoredFactors, weights: string) {
  const { editor } = ctx
  const gathered = editor.node('Gather', [weights, stored.expertOfRank], {
    attrs: { axis: 1 },
    hint: `${name}/w_of_rank`,
  })
  return editor.node('Mul', [gathered, stored.sigma], { hint: `${name}/s` }) // [batch, R]
}

/**
 * An embedding lookup's correction: ΔW[ids] = (U[ids] ⊙ s(w))·Vᵀ, the rows of U picked by the same ids, so no
 * dense ΔW is formed (a one-hot row times W is the lookup, and the factored product follows it).
 */
function lookupCorrection(
  ctx: RewriteContext,
  m: MatrixFactors,
  stored: StoredFactors,
  s: string,
  n: INodeProto,
  target: number,
  corrections: Corrections,
): void {
  const { editor } = ctx
  const ids = n.input?.[1] ?? ''
  const xu = editor.node('Gather', [stored.u, ids], { attrs: { axis: 0 }, hint: `${m.name}/rows` }) // [.., R]
  const z = editor.node('Mul', [xu, corrections.alignRows(s, target)], { hint: `${m.name}/xus` })
  corrections.add(target, editor.node('MatMul', [z, stored.vt], { hint: `${m.name}/delta` })) // [.., cols]
}

/** Each use of one matrix, multiplying every row by all R factor columns. */
function denseCorrections(
  ctx: RewriteContext,
  m: MatrixFactors,
  stored: StoredFactors,
  weights: string,
  corrections: Corrections,
): void {
  const { editor } = ctx
  const s = rankWeights(ctx, m.name, stored, weights)
  let vtT: string | undefined // [cols, R] for transposed uses
  let uT: string | undefined // [R, rows]
  for (const { use, node: n, target } of usesOf(ctx, m.name)) {
    if (use.op === 'Gather') {
      lookupCorrection(ctx, m, stored, s, n, target, corrections)
      continue
    }
    const x = activationOf(ctx, n, use, m.name)
    let inFactor = stored.u
    let outFactor = stored.vt
    if (use.transposed) {
      vtT ??= editor.node('Transpose', [stored.vt], {
        attrs: { perm: [1, 0] },
        hint: `${m.name}/v_t`,
      })
      uT ??= editor.node('Transpose', [stored.u], {
        attrs: { perm: [1, 0] },
        hint: `${m.name}/u_t`,
      })
      inFactor = vtT
      outFactor = uT
    }
    const xu = editor.node('MatMul', [x, inFactor], { hint: `${m.name}/xu` }) // [.., R]
    const z = editor.node('Mul', [xu, corrections.alignRows(s, target)], { hint: `${m.name}/xus` })
    const c = editor.node('MatMul', [z, outFactor], { hint: `${m.name}/delta` }) // [.., d_out]
    corrections.add(target, scaledByAlpha(ctx, n, use, c, m.name))
  }
}

/** Each use of one matrix, gathering the row's K experts' factors (top-k gather). */
function gatheredCorrections(
  ctx: RewriteContext,
  m: MatrixFactors & { r: number },
  stored: StoredFactors,
  weights: Required<ExpertWeights>,
  corrections: Corrections,
  folded: FoldedBiases,
): void {
  const bias = folded.byMatrix.get(m.name)
  const g = gatherMatrix(ctx.editor, ctx.ops, {
    name: m.name,
    u: stored.u,
    vt: stored.vt,
    sigma: stored.sigma,
    ...(bias ? { biasDelta: vectorDelta(ctx, bias) } : {}),
    rows: m.rows,
    cols: m.cols,
    r: m.r,
    T: ctx.experts,
    K: ctx.gatherK ?? ctx.experts,
    idx: weights.picked,
    picked: weights.pickedWeights,
  })
  let s: string | undefined // the dense s(w), for lookups: a row's ids pick table rows, not K experts' columns
  for (const { use, node: n, target } of usesOf(ctx, m.name)) {
    if (use.op === 'Gather') {
      s ??= rankWeights(ctx, m.name, stored, weights.applied)
      lookupCorrection(ctx, m, stored, s, n, target, corrections)
      continue
    }
    const x = activationOf(ctx, n, use, m.name)
    const c = g.correction(
      x,
      use.transposed,
      corrections.sharedOutput(target),
      corrections.layoutOf(target),
    )
    corrections.add(target, scaledByAlpha(ctx, n, use, c, m.name))
  }
}

export function emitMatrixCorrections(
  ctx: RewriteContext,
  weights: ExpertWeights,
  corrections: Corrections,
  folded: FoldedBiases,
): void {
  for (const given of ctx.options.matrices) {
    if (ctx.options.sites.get(given.name)?.kind !== 'matrix') continue
    if (given.sigma.length === 0) continue
    checkShape(given)
    if (given.basis) {
      emitBasisCorrections(ctx, { ...given, basis: given.basis }, weights.applied, corrections)
      continue
    }
    if (weights.picked !== undefined && weights.pickedWeights !== undefined) {
      const padded = padExpertMajor(given, ctx.experts)
      const stored = storeFactors(ctx, padded)
      const { picked, pickedWeights } = weights
      gatheredCorrections(
        ctx,
        padded,
        stored,
        { ...weights, picked, pickedWeights },
        corrections,
        folded,
      )
    } else denseCorrections(ctx, given, storeFactors(ctx, given), weights.applied, corrections)
  }
}
