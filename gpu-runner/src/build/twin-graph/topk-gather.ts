/**
 * The top-k gather formulation of the twin graph's matrix corrections (step 4 with `topkGather: k`). With T
 * experts at rank r, the dense formulation multiplies every row by all T·r factor columns
 * even when only k experts have non-zero weight; gathering the k experts' factors per row costs the FLOPs of
 * rank k·r (plus the gather copies, and the gathered factors cannot be prepacked by onnxruntime):
 *   idx = TopK(|w|, k); wk = w[idx], w keeps those, 0 elsewhere      // idx, wk [batch, k]
 *   col = idx·r + [0, r)                                              // the rows' rank columns [batch, k·r]
 *   Ug  = Gather(Uᵀ, col) → [batch, k·r, d_in], transposed            // Uᵀ [T·r, d_in]
 *   Vg  = Gather(σ ⊙ Vᵀ, col) → [batch, k·r, d_out]                   // σ ⊙ Vᵀ [T·r, d_out]
 *   s   = wk, each repeated r times → [batch, 1, k·r]                 // = w[expert_of_rank] at col
 *   ΔY  = ((X·Ugᵀ) ⊙ s)·Vg, X viewed as [batch, rows per example, d_in]
 * The row tables are the convention initializers `<w>.twin_u` [rows, T·r] transposed and `<w>.twin_v` [T·r, cols]
 * scaled by `<w>.twin_sigma` (expert-major, padded to equal ranks): both are functions of constants only, so
 * onnxruntime folds them into constants when it creates the session and the package keeps one copy of the factors.
 * σ rides in the table rather than in s, and s is one tensor per graph (the expert of column idx·r + j is idx),
 * so a matrix adds no per-row weight nodes of its own: at batch 1 a BERT-base-sized graph has 72 matrix uses,
 * and onnxruntime pays microseconds per node (issue #18). What it costs against the dense graph and the plain
 * shared model is measured by `npm run bench:perf` (bench/RESULTS.md, "Serving performance" and its frontier).
 * @module
 */

import { AppError } from '@twinserve/shared'
import { columnsOf, type MatrixFactors } from '../../factors/exclusive-factors.ts'
import type { GraphEditor } from '../graph/graph-editor.ts'
import type { Ops } from '../graph/ops.ts'
import { isAlone, type RowLayout } from '../graph/row-layout.ts'

/** Factors in expert-major order: u [rows, T·r], vt [T·r, cols], σ 0 where an expert has fewer than r components. */
export interface PaddedFactors extends MatrixFactors {
  /** Components per expert (the largest per-expert rank). */
  r: number
}

/**
 * Reorders a matrix's factors expert-major and pads every expert to the same rank r with zero singular values
 * (a zero σ column adds nothing to ΔW_t, so the naming convention's meaning is unchanged).
 */
export function padExpertMajor(m: MatrixFactors, T: number): PaddedFactors {
  const R = m.sigma.length
  const columns = Array.from({ length: T }, (_, t) => columnsOf(m, t))
  const r = Math.max(1, ...columns.map((c) => c.length))
  const P = T * r
  const u = new Float32Array(m.rows * P)
  const vt = new Float32Array(P * m.cols)
  const sigma = new Float32Array(P)
  columns.forEach((cols, t) => {
    cols.forEach((src, j) => {
      const dst = t * r + j
      for (let i = 0; i < m.rows; i++) u[i * P + dst] = m.u[i * R + src] as number
      vt.set(m.vt.subarray(src * m.cols, (src + 1) * m.cols), dst * m.cols)
      sigma[dst] = m.sigma[src] as number
    })
  })
  const expertOfRank = Int32Array.from({ length: P }, (_, c) => Math.floor(c / r))
  return { ...m, u, vt, sigma, expertOfRank, r }
}

/**
 * Per row, the K weights of largest magnitude: their expert indices [batch, K], and the dense [batch, T] weights
 * actually applied (zeros elsewhere).
 */
export function emitTopK(
  editor: GraphEditor,
  ops: Ops,
  w: string,
  K: number,
): { idx: string; applied: string; picked: string } {
  const abs = editor.node('Abs', [w], { hint: 'weights/abs' })
  const idx = ops.topK(abs, K, 'weights/top', {
    k: 'weights/k_gather',
    values: 'weights/top_abs',
    indices: 'weights/top_idx',
  }).indices // [batch, K] int64
  const wk = ops.gatherElements(w, idx, 'weights/top_w')
  const zeros = editor.node(
    'ConstantOfShape',
    [editor.node('Shape', [w], { hint: 'weights/shape' })],
    {
      hint: 'weights/zeros',
    },
  )
  const applied = ops.scatterElements(zeros, idx, wk, 'weights/applied')
  return { idx, applied, picked: wk }
}

/**
 * Tensors shared by every matrix of one rewrite (row indices per rank r, the batch size, X's 3-D shape per d_in):
 * built once per graph, since onnxruntime pays a few microseconds per node and there are hundreds of matrices.
 */
const sharedTensors = new WeakMap<GraphEditor, Map<string, string>>()

function once(editor: GraphEditor, key: string, make: () => string): string {
  let m = sharedTensors.get(editor)
  if (!m) {
    m = new Map()
    sharedTensors.set(editor, m)
  }
  const hit = m.get(key)
  if (hit) return hit
  const made = make()
  m.set(key, made)
  return made
}

/**
 * The row tables [T·r, d] of a matrix that carries its bias (folded-biases.ts), r counting the extra row: the
 * expert-major [T, r − 1, d] tables get one row more per expert, 0 on the U side and Δb_t on the V side.
 */
function withBiasRows(
  editor: GraphEditor,
  m: { name: string; T: number; r: number; rows: number; cols: number },
  uT: string,
  vt: string,
  biasDelta: string,
): [string, string] {
  const { name, T, r, rows, cols } = m
  const perExpert = (t: string, d: number, hint: string) =>
    editor.node('Reshape', [t, editor.int64(`${name}/${hint}_3d`, [T, -1, d])], {
      hint: `${name}/${hint}_3d`,
    })
  const flat = (t: string, d: number, hint: string) =>
    editor.node('Reshape', [t, editor.int64(`${name}/${hint}_2d`, [T * r, d])], {
      hint: `${name}/${hint}_bias`,
    })
  const zeros = editor.node('ConstantOfShape', [editor.int64(`${name}/u_pad`, [T, 1, rows])], {
    hint: `${name}/u_pad_rows`,
  })
  const u = flat(
    editor.node('Concat', [perExpert(uT, rows, 'u'), zeros], {
      attrs: { axis: 1 },
      hint: `${name}/u_rows_padded`,
    }),
    rows,
    'u',
  )
  const v = flat(
    editor.node('Concat', [perExpert(vt, cols, 'v'), perExpert(biasDelta, cols, 'b')], {
      attrs: { axis: 1 },
      hint: `${name}/v_rows_bias`,
    }),
    cols,
    'v',
  )
  return [u, v]
}

/** Emits one matrix's gathered factors; `correction` adds the nodes for one use. */
export function gatherMatrix(
  editor: GraphEditor,
  ops: Ops,
  p: {
    name: string
    /** Graph tensors of the padded factors: U [rows, T·r], Vᵀ [T·r, cols], σ [T·r]. */
    u: string
    vt: string
    sigma: string
    /** The deltas [T, cols] of the bias this matrix's correction carries (folded-biases.ts). */
    biasDelta?: string
    rows: number
    cols: number
    r: number
    T: number
    K: number
    /** Each row's experts [batch, K] (int64) and their weights [batch, K]. */
    idx: string
    picked: string
  },
): {
  correction: (x: string, transposed: boolean, shapeOf: string, layout: RowLayout) => string
} {
  const { name, rows, cols, T, K, idx } = p
  // With a folded bias each expert has one more table row: its bias delta (V side) against a zero row (U side).
  const r = p.biasDelta ? p.r + 1 : p.r
  const kr = K * r
  // Each row's rank columns: expert e owns columns e·r … e·r + r − 1 (expert-major, padded).
  const columns = once(editor, `columns|${idx}|${r}|${K}`, () => {
    const first = editor.node(
      'Mul',
      [
        ops.unsqueeze(idx, [2], 'gather/idx3', 'gather/axis2'),
        editor.int64(`gather/r${r}`, [r], []),
      ],
      { hint: 'gather/first_column' },
    ) // [batch, K, 1]
    const all = editor.node(
      'Add',
      [
        first,
        editor.int64(
          `gather/range${r}`,
          Array.from({ length: r }, (_, j) => j),
        ),
      ],
      { hint: 'gather/columns3' },
    ) // [batch, K, r]
    return editor.node('Reshape', [all, editor.int64(`gather/columns_shape${kr}`, [0, kr])], {
      hint: 'gather/columns',
    }) // [batch, K·r]
  })
  const batch = once(editor, `batch|${idx}`, () =>
    editor.node(
      'Gather',
      [editor.node('Shape', [idx], { hint: 'gather/idx_shape' }), editor.int64('gather/i0', [0])],
      { attrs: { axis: 0 }, hint: 'gather/batch' },
    ),
  ) // [1]
  // Row tables [T·r, d], functions of constants (folded when the session is created): Uᵀ, and σ ⊙ Vᵀ.
  let uT = editor.node('Transpose', [p.u], { attrs: { perm: [1, 0] }, hint: `${name}/u_rows` }) // [T·r, rows]
  let vtScaled = editor.node(
    'Mul',
    [p.vt, ops.unsqueeze(p.sigma, [1], `${name}/sigma_col`, 'gather/axis1')],
    { hint: `${name}/v_rows` },
  ) // [T·r, cols]
  if (p.biasDelta)
    [uT, vtScaled] = withBiasRows(editor, { name, T, r, rows, cols }, uT, vtScaled, p.biasDelta)
  // 1 at each expert's bias column: X·Ugᵀ + e puts w·Δb into the gathered product.
  const biasColumns = p.biasDelta
    ? once(editor, `e|${r}|${K}`, () =>
        editor.float(
          `gather/bias_columns${kr}`,
          Float32Array.from({ length: kr }, (_, c) => (c % r === r - 1 ? 1 : 0)),
          [kr],
        ),
      )
    : undefined
  // s: the row's K weights, each over its expert's r columns (the expert of column idx·r + j is idx).
  const s = once(editor, `s|${p.picked}|${r}|${K}`, () =>
    editor.node(
      'Reshape',
      [
        editor.node(
          'Expand',
          [
            ops.unsqueeze(p.picked, [2], 'gather/picked3', 'gather/axis2'),
            editor.int64(`gather/repeat${r}`, [1, 1, r]),
          ],
          { hint: 'gather/picked_repeated' },
        ), // [batch, K, r]
        editor.int64(`gather/s_shape${kr}`, [0, 1, kr]),
      ],
      { hint: 'gather/s' },
    ),
  ) // [batch, 1, K·r]
  const cache = new Map<string, string>()
  const gathered = (table: string, transpose: boolean): string => {
    const key = `${table}|${transpose}`
    const hit = cache.get(key)
    if (hit) return hit
    // Rows of the table by index: [batch, K·r, d] directly, no reshape (a copy) of the gathered factors.
    const g = editor.node('Gather', [table, columns], { attrs: { axis: 0 }, hint: `${name}/g` })
    // Transposed for X·Ugᵀ: onnxruntime fuses the Transpose into the MatMul (FusedMatMul transB), no copy.
    const out = transpose
      ? editor.node('Transpose', [g], { attrs: { perm: [0, 2, 1] }, hint: `${name}/g_t` })
      : g
    cache.set(key, out)
    return out
  }
  /** [batch, rows per example, d_in] → the correction [batch, rows per example, d_out]. */
  const perRow = (x3: string, transposed: boolean): string => {
    const [inF, outF] = transposed ? [vtScaled, uT] : [uT, vtScaled]
    let xu = editor.node('MatMul', [x3, gathered(inF, true)], { hint: `${name}/xu` }) // [batch, M, K·r]
    if (biasColumns) xu = editor.node('Add', [xu, biasColumns], { hint: `${name}/xu_bias` })
    const z = editor.node('Mul', [xu, s], { hint: `${name}/xus` })
    return editor.node('MatMul', [z, gathered(outF, false)], { hint: `${name}/delta` }) // [batch, M, d_out]
  }
  const x3Shape = (dIn: number) =>
    once(editor, `x3|${idx}|${dIn}`, () =>
      editor.node('Concat', [batch, editor.int64(`gather/x3_tail${dIn}`, [-1, dIn])], {
        attrs: { axis: 0 },
        hint: 'gather/x3_shape',
      }),
    )
  return {
    correction(x, transposed, shapeOf, layout) {
      const dIn = transposed ? cols : rows
      if (layout.axis === 0 && layout.outer.fixed && layout.outer.size === 1) {
        // The batch is the outermost row index: X viewed as [batch, rows per example, d_in] directly.
        const x3 = editor.node('Reshape', [x, x3Shape(dIn)], { hint: `${name}/x3` })
        return editor.node(
          'Reshape',
          [perRow(x3, transposed), editor.node('Shape', [shapeOf], { hint: `${name}/y_shape` })],
          { hint: `${name}/delta_y` },
        )
      }
      if (!isAlone(layout))
        throw new AppError(
          'INVALID_REQUEST',
          `exclusive.topk_gather: the output '${shapeOf}' of a use of '${name}' has the batch flattened inside axis ${layout.axis} after other sizes (as in [seq·batch, d]); the gather needs each example's rows together. Build without topk_gather, or exclude '${name}'`,
        )
      // The batch alone on axis a ([seq, batch, d]): moved to the front and back again.
      const perm = [
        layout.axis,
        ...Array.from({ length: layout.rank }, (_, i) => i).filter((i) => i !== layout.axis),
      ]
      const inverse = perm.map((_, i) => perm.indexOf(i))
      const xt = editor.node('Transpose', [x], { attrs: { perm }, hint: `${name}/x_batch_first` })
      const x3 = editor.node('Reshape', [xt, x3Shape(dIn)], { hint: `${name}/x3` })
      const yShape = editor.node(
        'Gather',
        [
          editor.node('Shape', [shapeOf], { hint: `${name}/y_shape` }),
          editor.int64(`${name}/perm`, perm),
        ],
        { attrs: { axis: 0 }, hint: `${name}/y_shape_batch_first` },
      )
      const c = editor.node('Reshape', [perRow(x3, transposed), yShape], {
        hint: `${name}/delta_t`,
      })
      return editor.node('Transpose', [c], { attrs: { perm: inverse }, hint: `${name}/delta_y` })
    },
  }
}
