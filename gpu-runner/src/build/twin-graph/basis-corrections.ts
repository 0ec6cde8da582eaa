/**
 * Step 4 for a matrix stored as a basis shared by the experts (recipe `exclusive.shared_basis`): ΔW_t = A·C_t·B
 * with A [rows, Ri], B [Ro, cols] shared and C_t [Ri, Ro] per expert. For a use Y = X·W the correction is
 *   z  = X·A                                         // [.., Ri], once per row, whatever T is
 *   z' = Σ_t w_t·(z·C_t) = ((z, …, z) ⊙ s(w))·[C_1; …; C_T]   // s(w) = w_t over expert t's Ri columns, [.., T·Ri]
 *   ΔY = z'·B                                        // [.., cols]
 * When the batch is the outermost index of the output ([batch, …], [batch·seq, d]) the cores are mixed once per
 * example instead, M_b = Σ_t w_bt·C_t (one [batch, T]·[T, Ri·Ro] MatMul), and every row of example b computes
 * z·M_b (X viewed as [batch, rows per example, d_in], a batched MatMul): per example T·Ri·Ro, per row
 * Ri·rows + Ri·Ro + Ro·cols multiply-adds, so a sequence of L tokens pays the T·Ri·Ro mix once, not L times.
 * Other layouts ([seq, batch, d], [seq·batch, d]) and embedding lookups take the per-row form above: one MatMul
 * against the constant stacked cores [T·Ri, Ro], s(w) broadcast by the output's row layout like every other
 * per-row term (corrections.ts), Ri·rows + T·Ri·Ro + Ro·cols per row. Per-expert factors of rank r cost
 * T·r·(rows + cols) per row.
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

/** The graph tensors of one matrix's basis and the nodes built from them, each built once on first use. */
class BasisEmitter {
  private readonly memo = new Map<string, string>()
  private readonly Ri: number
  private readonly Ro: number

  constructor(
    private readonly ctx: RewriteContext,
    private readonly m: MatrixFactors,
    /** A [rows, Ri], B [Ro, cols], cores [T, Ri, Ro] as float32 graph tensors. */
    private readonly A: string,
    private readonly B: string,
    private readonly cores: string,
    basis: SharedBasis,
    /** The per-row expert weights [batch, T]. */
    private readonly weights: string,
    private readonly corrections: Corrections,
  ) {
    this.Ri = basis.rankIn
    this.Ro = basis.rankOut
  }

  private once(key: string, make: () => string): string {
    const hit = this.memo.get(key)
    if (hit) return hit
    const made = make()
    this.memo.set(key, made)
    return made
  }

  private node(
    op: string,
    inputs: string[],
    hint: string,
    attrs?: Record<string, number | number[]>,
  ) {
    return this.ctx.editor.node(op, inputs, {
      hint: `${this.m.name}/${hint}`,
      ...(attrs ? { attrs } : {}),
    })
  }

  private int64(hint: string, values: number[]): string {
    return this.ctx.editor.int64(`${this.m.name}/${hint}`, values)
  }

  /** Forward (X·W): A in, B out; transposed (X·Wᵀ): Bᵀ in, Aᵀ out. */
  private inFactor(transposed: boolean): string {
    return transposed
      ? this.once('in_t', () => this.node('Transpose', [this.B], 'basis_v_t', { perm: [1, 0] }))
      : this.A
  }

  private outFactor(transposed: boolean): string {
    return transposed
      ? this.once('out_t', () => this.node('Transpose', [this.A], 'basis_u_t', { perm: [1, 0] }))
      : this.B
  }

  /** [T, width, other]: the cores, transposed for X·Wᵀ. */
  private coresOf(transposed: boolean): string {
    if (!transposed) return this.cores
    return this.once('cores_t', () =>
      this.node('Transpose', [this.cores], 'cores_t', { perm: [0, 2, 1] }),
    )
  }

  /** Per row: z [.., width] in the basis → ((z, …, z) ⊙ s(w))·[C_1; …; C_T]·B, the correction [.., d_out]. */
  rowMixed(z: string, transposed: boolean, target: number): string {
    const T = this.ctx.experts
    const width = transposed ? this.Ro : this.Ri
    const tag = transposed ? '_t' : ''
    // Expert t's core in rows t·width … t·width + width − 1 (a function of constants: folded).
    const stacked = this.once(`stacked${tag}`, () =>
      this.node(
        'Reshape',
        [this.coresOf(transposed), this.int64(`cores_shape${tag}`, [T * width, -1])],
        'cores_stacked',
      ),
    )
    const s = this.once(`s${tag}`, () =>
      this.node(
        'Gather',
        [
          this.weights,
          this.int64(
            `expert_of_column${tag}`,
            Array.from({ length: T * width }, (_, c) => Math.floor(c / width)),
          ),
        ],
        'w_of_column',
        { axis: 1 },
      ),
    ) // [batch, T·width]
    const repeated = this.node('Concat', Array(T).fill(z), 'z_per_expert', { axis: -1 }) // [.., T·width]
    const zs = this.node('Mul', [repeated, this.corrections.alignRows(s, target)], 'zs')
    const z2 = this.node('MatMul', [zs, stacked], 'z_mixed') // [.., other]
    return this.node('MatMul', [z2, this.outFactor(transposed)], 'delta')
  }

  /** Per example: M_b = Σ_t w_bt·C_t [batch, width, other]. */
  private mixedCores(transposed: boolean): string {
    return this.once(`mixed${transposed ? '_t' : ''}`, () => {
      const T = this.ctx.experts
      const [width, other] = transposed ? [this.Ro, this.Ri] : [this.Ri, this.Ro]
      const flat = this.node(
        'Reshape',
        [this.coresOf(transposed), this.int64('cores_flat', [T, width * other])],
        'cores_flat',
      ) // [T, width·other], a constant
      const mixed = this.node('MatMul', [this.weights, flat], 'cores_mixed')
      return this.node(
        'Reshape',
        [mixed, this.int64('cores_mixed_shape', [0, width, other])],
        'cores_per_example',
      )
    })
  }

  /** Per example: X [batch·M…, d_in] viewed as [batch, M, d_in] → the correction in the node's output shape. */
  exampleMixed(x: string, transposed: boolean, target: number): string {
    const dIn = transposed ? this.m.cols : this.m.rows
    const batch = this.once('batch', () =>
      this.node(
        'Gather',
        [this.node('Shape', [this.weights], 'w_shape'), this.int64('i0', [0])],
        'batch',
        { axis: 0 },
      ),
    )
    const shape = this.node('Concat', [batch, this.int64('x3_tail', [-1, dIn])], 'x3_shape', {
      axis: 0,
    })
    const x3 = this.node('Reshape', [x, shape], 'x3')
    const z = this.node('MatMul', [x3, this.inFactor(transposed)], 'xa') // [batch, M, width]
    const z2 = this.node('MatMul', [z, this.mixedCores(transposed)], 'z_mixed') // [batch, M, other]
    const d = this.node('MatMul', [z2, this.outFactor(transposed)], 'delta3') // [batch, M, d_out]
    const y = this.node('Shape', [this.corrections.sharedOutput(target)], 'y_shape')
    return this.node('Reshape', [d, y], 'delta')
  }

  /** One use of the matrix: its correction, added to its target node. */
  use(use: MatrixUse, n: INodeProto, target: number): void {
    if (use.op === 'Gather') {
      // W[ids]: the ids pick A's rows, the rest follows (no dense ΔW).
      const z = this.node('Gather', [this.A, n.input?.[1] ?? ''], 'rows', { axis: 0 })
      this.corrections.add(target, this.rowMixed(z, false, target))
      return
    }
    let x = n.input?.[0] ?? ''
    if (use.op === 'Gemm' && intAttr(n, 'transA', 0) === 1)
      x = this.node('Transpose', [x], 'a_t', { perm: [1, 0] })
    const l = this.corrections.layoutOf(target)
    const c =
      l.axis === 0 && l.outer.fixed && l.outer.size === 1
        ? this.exampleMixed(x, use.transposed, target)
        : this.rowMixed(
            this.node('MatMul', [x, this.inFactor(use.transposed)], 'xa'),
            use.transposed,
            target,
          )
    const alpha = use.op === 'Gemm' ? floatAttr(n, 'alpha', 1) : 1
    this.corrections.add(
      target,
      alpha === 1 ? c : this.node('Mul', [c, this.ctx.ops.scalar(alpha)], 'alpha'),
    )
  }
}

/** Emits the corrections of every use of one matrix stored as a shared basis. */
export function emitBasisCorrections(
  ctx: RewriteContext,
  m: MatrixFactors & { basis: SharedBasis },
  weights: string,
  corrections: Corrections,
): void {
  const T = ctx.experts
  const b = m.basis
  checkBasis(m, b, T)
  if (ctx.gatherK !== undefined)
    throw new AppError(
      'INVALID_REQUEST',
      `'${m.name}' is stored as a shared basis, which the top-k gather graph cannot serve: build without topk_gather`,
    )
  const S = TWIN_FACTOR_SUFFIXES
  const q =
    ctx.options.factorDtype === 'int8'
      ? quantizeBasis(b, m.rows, m.cols, T)
      : { u: b.u, v: b.v, cores: b.cores }
  const emitter = new BasisEmitter(
    ctx,
    m,
    store(ctx, `${m.name}${S.basisU}`, q.u, [m.rows, b.rankIn]), // [rows, Ri]
    store(ctx, `${m.name}${S.basisV}`, q.v, [b.rankOut, m.cols]), // [Ro, cols]
    store(ctx, `${m.name}${S.cores}`, q.cores, [T, b.rankIn, b.rankOut]), // [T, Ri, Ro]
    b,
    weights,
    corrections,
  )
  const site = ctx.options.sites.get(m.name)
  const targets = ctx.targets.get(m.name) ?? []
  const uses: MatrixUse[] = site?.kind === 'matrix' ? site.uses : []
  uses.forEach((use, k) => {
    emitter.use(use, ctx.original[use.node] as INodeProto, targets[k] ?? use.node)
  })
}
