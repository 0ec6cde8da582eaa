/**
 * Step 4 for a matrix stored as a basis shared by the experts (recipe `exclusive.shared_basis`): ΔW_t = A·C_t·B
 * with A [rows, Ri], B [Ro, cols] shared and C_t [Ri, Ro] per expert. For a use Y = X·W the correction is
 *   z  = X·A                                         // [.., Ri], once per row, whatever T is
 *   z' = Σ_t w_t·(z·C_t) = ((z, …, z) ⊙ s(w))·[C_1; …; C_T]   // s(w) = w_t over expert t's Ri columns, [.., T·Ri]
 *   ΔY = z'·B                                        // [.., cols]
 * The mix is one MatMul against the constant stacked cores [T·Ri, Ro] (prepacked by onnxruntime), and s(w) is a
 * per-row [batch, T·Ri] tensor broadcast by the output's row layout like every other per-row term
 * (corrections.ts), so the formulation works for every layout the dense graph handles. Per row it costs
 * Ri·rows + T·Ri·Ro + Ro·cols multiply-adds, against T·r·(rows + cols) for per-expert factors of rank r.
 * Uses of Wᵀ take Bᵀ, the transposed cores and Aᵀ; an embedding lookup takes A's rows by the same ids.
 * @module
 */
import { AppError, TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import type { MatrixFactors, SharedBasis } from '../../factors/exclusive-factors.ts'
import { int8Tensor } from '../../factors/int8-factors.ts'
import { quantizeBasis } from '../../factors/shared-basis-int8.ts'
import { float16Tensor } from '../../onnx/float16.ts'
import { type INodeProto, onnx } from '../../onnx/proto.ts'
import { floatAttr, intAttr, type MatrixUse } from '../graph/weight-sites.ts'
import type { Corrections } from './corrections.ts'
import type { RewriteContext } from './rewrite-context.ts'

/** A float tensor under its convention name, as `factorDtype` stores it; the graph computes with a float32 Cast. */
function store(
  ctx: RewriteContext,
  name: string,
  data: Float32Array | Int8Array,
  dims: readonly number[],
): string {
  const { editor } = ctx
  if (data instanceof Int8Array) editor.initializer(int8Tensor(editor.claim(name), data, dims))
  else if ((ctx.options.factorDtype ?? 'float32') !== 'float32')
    editor.initializer(float16Tensor(editor.claim(name), data, dims))
  else return editor.float(name, data, dims, true)
  return editor.node('Cast', [name], {
    attrs: { to: onnx.TensorProto.DataType.FLOAT },
    hint: `${name}/f32`,
  })
}

function checkBasis(m: MatrixFactors, b: SharedBasis, T: number): void {
  const { rankIn: Ri, rankOut: Ro } = b
  if (b.u.length !== m.rows * Ri || b.v.length !== Ro * m.cols || b.cores.length !== T * Ri * Ro)
    throw new AppError(
      'INVALID_MODEL',
      `shared basis of '${m.name}' does not match [${m.rows}, ${m.cols}] at ranks ${Ri}, ${Ro} for ${T} experts`,
    )
}

/** Emits the corrections of every use of one matrix stored as a shared basis. */
export function emitBasisCorrections(
  ctx: RewriteContext,
  m: MatrixFactors & { basis: SharedBasis },
  weights: string,
  corrections: Corrections,
): void {
  const { editor } = ctx
  const T = ctx.experts
  const b = m.basis
  checkBasis(m, b, T)
  if (ctx.gatherK !== undefined)
    throw new AppError(
      'INVALID_REQUEST',
      `'${m.name}' is stored as a shared basis, which the top-k gather graph cannot serve: build without topk_gather`,
    )
  const { rankIn: Ri, rankOut: Ro } = b
  const S = TWIN_FACTOR_SUFFIXES
  const q =
    ctx.options.factorDtype === 'int8'
      ? quantizeBasis(b, m.rows, m.cols, T)
      : { u: b.u, v: b.v, cores: b.cores }
  const A = store(ctx, `${m.name}${S.basisU}`, q.u, [m.rows, Ri]) // [rows, Ri]
  const B = store(ctx, `${m.name}${S.basisV}`, q.v, [Ro, m.cols]) // [Ro, cols]
  const cores = store(ctx, `${m.name}${S.cores}`, q.cores, [T, Ri, Ro]) // [T, Ri, Ro]

  // Per side (forward X·W, or transposed X·Wᵀ): the stacked cores and s(w), built on first use.
  const sides = new Map<boolean, { stacked: string; s: string; inF: string; outF: string }>()
  const side = (transposed: boolean) => {
    const hit = sides.get(transposed)
    if (hit) return hit
    const width = transposed ? Ro : Ri
    const coreT = transposed
      ? editor.node('Transpose', [cores], { attrs: { perm: [0, 2, 1] }, hint: `${m.name}/cores_t` })
      : cores
    // [T·width, other]: expert t's core in rows t·width … t·width + width − 1 (a function of constants: folded).
    const stacked = editor.node(
      'Reshape',
      [coreT, editor.int64(`${m.name}/cores_shape${transposed ? '_t' : ''}`, [T * width, -1])],
      { hint: `${m.name}/cores_stacked` },
    )
    const expertOfColumn = editor.int64(
      `${m.name}/expert_of_column${transposed ? '_t' : ''}`,
      Array.from({ length: T * width }, (_, c) => Math.floor(c / width)),
    )
    const s = editor.node('Gather', [weights, expertOfColumn], {
      attrs: { axis: 1 },
      hint: `${m.name}/w_of_column`,
    }) // [batch, T·width]
    const inF = transposed
      ? editor.node('Transpose', [B], { attrs: { perm: [1, 0] }, hint: `${m.name}/basis_v_t` })
      : A
    const outF = transposed
      ? editor.node('Transpose', [A], { attrs: { perm: [1, 0] }, hint: `${m.name}/basis_u_t` })
      : B
    const made = { stacked, s, inF, outF }
    sides.set(transposed, made)
    return made
  }

  /** z [.., width] in the basis → the correction [.., d_out]. */
  const mixed = (z: string, transposed: boolean, target: number): string => {
    const { stacked, s, outF } = side(transposed)
    const repeated = editor.node('Concat', Array(T).fill(z), {
      attrs: { axis: -1 },
      hint: `${m.name}/z_per_expert`,
    }) // [.., T·width]
    const zs = editor.node('Mul', [repeated, corrections.alignRows(s, target)], {
      hint: `${m.name}/zs`,
    })
    const z2 = editor.node('MatMul', [zs, stacked], { hint: `${m.name}/z_mixed` }) // [.., other width]
    return editor.node('MatMul', [z2, outF], { hint: `${m.name}/delta` })
  }

  const site = ctx.options.sites.get(m.name)
  const targets = ctx.targets.get(m.name) ?? []
  const uses: MatrixUse[] = site?.kind === 'matrix' ? site.uses : []
  uses.forEach((use, k) => {
    const n = ctx.original[use.node] as INodeProto
    const target = targets[k] ?? use.node
    if (use.op === 'Gather') {
      // W[ids]: the ids pick A's rows, the rest follows (no dense ΔW).
      const z = editor.node('Gather', [A, n.input?.[1] ?? ''], {
        attrs: { axis: 0 },
        hint: `${m.name}/rows`,
      })
      corrections.add(target, mixed(z, false, target))
      return
    }
    let x = n.input?.[0] ?? ''
    if (use.op === 'Gemm' && intAttr(n, 'transA', 0) === 1)
      x = editor.node('Transpose', [x], { attrs: { perm: [1, 0] }, hint: `${m.name}/a_t` })
    const z = editor.node('MatMul', [x, side(use.transposed).inF], { hint: `${m.name}/xa` })
    let c = mixed(z, use.transposed, target)
    const alpha = use.op === 'Gemm' ? floatAttr(n, 'alpha', 1) : 1
    if (alpha !== 1) c = editor.node('Mul', [c, ctx.ops.scalar(alpha)], { hint: `${m.name}/alpha` })
    corrections.add(target, c)
  })
}
