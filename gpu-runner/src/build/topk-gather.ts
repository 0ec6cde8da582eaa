/**
 * The top-k gather formulation of the twin graph's matrix corrections (handbook factored-serving.md, "Top-2
 * formulation"). With T experts at rank r, the dense formulation multiplies every row by all T·r factor columns
 * even when only k experts have non-zero weight; gathering the k experts' factors per row costs the FLOPs of
 * rank k·r (plus the gather copies, and the gathered factors cannot be prepacked by onnxruntime):
 *   idx = TopK(|w|, k); w keeps those experts' weights, 0 elsewhere   // idx [batch, k]
 *   Ug  = Gather(U3, idx) → [batch, k·r, d_in], transposed            // U3 [T, r, d_in]
 *   Vg  = Gather(V3, idx) → [batch, k·r, d_out]                       // V3 [T, r, d_out]
 *   s   = w[expert_of_rank] ⊙ σ (the dense graph's s(w)), the row's k experts → [batch, 1, k·r]
 *   ΔY  = ((X·Ugᵀ) ⊙ s)·Vg, X viewed as [batch, rows per example, d_in]
 * U3 and V3 are Reshape/Transpose views of the convention initializers `<w>.twin_u` [rows, T·r] and
 * `<w>.twin_v` [T·r, cols] (stored expert-major and padded to equal ranks), so the package keeps one copy of the
 * factors, and onnxruntime folds the views into constants when it creates the session.
 * @module
 */
import type { GraphEditor } from './graph-editor.ts'
import type { MatrixFactors } from './twin-graph.ts'

export interface PaddedFactors {
  /** [rows, T·r] */
  U: Float32Array
  /** [T·r, cols] */
  Vt: Float32Array
  /** [T·r]; 0 where an expert has fewer than r components */
  sigma: Float32Array
  /** [T·r]: t repeated r times */
  expertOfRank: number[]
  /** Components per expert (the largest per-expert rank). */
  r: number
}

/**
 * Reorders a matrix's factors expert-major and pads every expert to the same rank r with zero singular values
 * (a zero σ column adds nothing to ΔW_t, so the naming convention's meaning is unchanged).
 */
export function padExpertMajor(m: MatrixFactors, T: number): PaddedFactors {
  const R = m.sigma.length
  const columns: number[][] = Array.from({ length: T }, () => [])
  m.expertOfRank.forEach((t, c) => {
    columns[t]?.push(c)
  })
  const r = Math.max(1, ...columns.map((c) => c.length))
  const P = T * r
  const U = new Float32Array(m.rows * P)
  const Vt = new Float32Array(P * m.cols)
  const sigma = new Float32Array(P)
  columns.forEach((cols, t) => {
    cols.forEach((src, j) => {
      const dst = t * r + j
      for (let i = 0; i < m.rows; i++) U[i * P + dst] = m.U[i * R + src] as number
      Vt.set(m.Vt.subarray(src * m.cols, (src + 1) * m.cols), dst * m.cols)
      sigma[dst] = m.sigma[src] as number
    })
  })
  const expertOfRank = Array.from({ length: P }, (_, c) => Math.floor(c / r))
  return { U, Vt, sigma, expertOfRank, r }
}

/**
 * Per row, the K weights of largest magnitude: their expert indices [batch, K], and the dense [batch, T] weights
 * actually applied (zeros elsewhere).
 */
export function emitTopK(ed: GraphEditor, w: string, K: number): { idx: string; applied: string } {
  const idx = ed.fresh('weights/top_idx') // [batch, K] int64
  const abs = ed.node('Abs', [w], { hint: 'weights/abs' })
  ed.node('TopK', [abs, ed.int64('weights/k_gather', [K])], {
    outputs: [ed.fresh('weights/top_abs'), idx],
    attrs: { axis: -1, largest: 1, sorted: 1 },
    hint: 'weights/top',
  })
  const wk = ed.node('GatherElements', [w, idx], { attrs: { axis: 1 }, hint: 'weights/top_w' })
  const zeros = ed.node('ConstantOfShape', [ed.node('Shape', [w], { hint: 'weights/shape' })], {
    hint: 'weights/zeros',
  })
  const applied = ed.node('ScatterElements', [zeros, idx, wk], {
    attrs: { axis: 1 },
    hint: 'weights/applied',
  })
  return { idx, applied }
}

/** Emits one matrix's gathered factors; `correction` adds the nodes for one use. */
export function gatherMatrix(
  ed: GraphEditor,
  p: {
    name: string
    /** Graph tensors of the padded factors: U [rows, T·r], Vᵀ [T·r, cols], σ and expert of rank [T·r]. */
    U: string
    Vt: string
    sigma: string
    expertOfRank: string
    rows: number
    cols: number
    r: number
    T: number
    K: number
    /** The applied weights [batch, T] and each row's experts [batch, K]. */
    w: string
    idx: string
  },
): { correction: (x: string, transposed: boolean, shapeOf: string) => string } {
  const { name, rows, cols, r, T, K, idx } = p
  const kr = K * r
  const u3 = ed.node(
    'Transpose',
    [
      ed.node('Reshape', [p.U, ed.int64(`${name}/u3_shape`, [rows, T, r])], {
        hint: `${name}/u3r`,
      }),
    ],
    { attrs: { perm: [1, 2, 0] }, hint: `${name}/u3` },
  ) // [T, r, rows]
  const v3 = ed.node('Reshape', [p.Vt, ed.int64(`${name}/v3_shape`, [T, r, cols])], {
    hint: `${name}/v3`,
  }) // [T, r, cols]
  const wOfRank = ed.node('Gather', [p.w, p.expertOfRank], {
    attrs: { axis: 1 },
    hint: `${name}/w_of_rank`,
  }) // [batch, T·r]
  const perExpert = ed.node(
    'Reshape',
    [
      ed.node('Mul', [wOfRank, p.sigma], { hint: `${name}/s_all` }),
      ed.int64(`${name}/s3_shape`, [0, T, r]),
    ],
    { hint: `${name}/s3` },
  ) // [batch, T, r]
  const rowIdx = ed.node('Unsqueeze', [idx, ed.int64(`${name}/idx_axes`, [2])], {
    hint: `${name}/idx3`,
  }) // [batch, K, 1]
  const picked = ed.node('GatherND', [perExpert, rowIdx], {
    attrs: { batch_dims: 1 },
    hint: `${name}/s_k`,
  }) // [batch, K, r]
  const s = ed.node('Reshape', [picked, ed.int64(`${name}/s_shape`, [0, 1, kr])], {
    hint: `${name}/s`,
  }) // [batch, 1, K·r]
  const batch = ed.node(
    'Gather',
    [ed.node('Shape', [idx], { hint: `${name}/idx_shape` }), ed.int64(`${name}/i0`, [0])],
    { attrs: { axis: 0 }, hint: `${name}/batch` },
  ) // [1]
  const cache = new Map<string, string>()
  const gathered = (f3: string, d: number, transpose: boolean): string => {
    const key = `${f3}|${transpose}`
    const hit = cache.get(key)
    if (hit) return hit
    const g = ed.node(
      'Reshape',
      [
        ed.node('Gather', [f3, idx], { attrs: { axis: 0 }, hint: `${name}/g` }), // [batch, K, r, d]
        ed.int64(`${name}/g_shape`, [0, kr, d]),
      ],
      { hint: `${name}/g_rows` },
    ) // [batch, K·r, d]
    // Transposed for X·Ugᵀ: onnxruntime fuses the Transpose into the MatMul (FusedMatMul transB), no copy.
    const out = transpose
      ? ed.node('Transpose', [g], { attrs: { perm: [0, 2, 1] }, hint: `${name}/g_t` })
      : g
    cache.set(key, out)
    return out
  }
  return {
    correction(x, transposed, shapeOf) {
      const [inF, dIn, outF, dOut] = transposed ? [v3, cols, u3, rows] : [u3, rows, v3, cols]
      const x3 = ed.node(
        'Reshape',
        [
          x,
          ed.node('Concat', [batch, ed.int64(`${name}/x3_tail`, [-1, dIn])], {
            attrs: { axis: 0 },
            hint: `${name}/x3_shape`,
          }),
        ],
        { hint: `${name}/x3` },
      ) // [batch, rows per example, d_in]
      const xu = ed.node('MatMul', [x3, gathered(inF, dIn, true)], { hint: `${name}/xu` }) // [batch, M, K·r]
      const z = ed.node('Mul', [xu, s], { hint: `${name}/xus` })
      const c3 = ed.node('MatMul', [z, gathered(outF, dOut, false)], { hint: `${name}/delta` }) // [batch, M, d_out]
      return ed.node('Reshape', [c3, ed.node('Shape', [shapeOf], { hint: `${name}/y_shape` })], {
        hint: `${name}/delta_y`,
      })
    },
  }
}
