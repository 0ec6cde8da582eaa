/**
 * A linear layer (logits = x·W + b) and its weight gradient (xᵀ·dz) computed in JS over the non-zeros of x, for
 * inputs that are mostly zeros (the text router's bag of tokens: under 100 non-zeros in 13,255 columns). The sums
 * are formed in the order onnxruntime's CPU kernels form them, so the results are the bits the training graph
 * gives (checked against it by sparse-linear.test.ts):
 * - ORT fuses the graph's MatMul + Add into one Gemm, and MLAS's SGEMM starts from the bias, then adds one partial
 *   sum per stride of K, each a chain of fused multiply-adds from zero in column order (sgemm.cpp,
 *   MlasSgemmOperation: the K stride is 128, doubled while the N stride, from 128, halves down to 16 for a narrow
 *   output; 1,024 for up to 16 classes);
 * - a zero term leaves a fused multiply-add's result unchanged, so skipping the zeros changes no bit;
 * - the weight gradient (K = batch rows, one stride) is one such chain per weight, in row order.
 * A one-row product takes MLAS's M = 1 kernel, a different order: callers use the graph for those.
 * @see https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/mlas/lib/sgemm.cpp
 * @module
 */

/** Rows of a [n, d] matrix as their non-zeros in ascending column order (compressed sparse rows). */
export interface SparseRows {
  n: number
  d: number
  /** [n + 1]: row i's non-zeros are [start[i], start[i + 1]). */
  start: Int32Array
  /** [nnz] */
  col: Int32Array
  /** [nnz] */
  val: Float32Array
}

/** The non-zeros of x [n, d], row by row. */
export function toSparseRows(x: Float32Array, d: number): SparseRows {
  const n = x.length / d
  let nnz = 0
  for (let i = 0; i < x.length; i++) if (x[i] !== 0) nnz++
  const start = new Int32Array(n + 1)
  const col = new Int32Array(nnz)
  const val = new Float32Array(nnz)
  let k = 0
  for (let r = 0; r < n; r++) {
    start[r] = k
    const base = r * d
    for (let j = 0; j < d; j++) {
      const v = x[base + j] as number
      if (v !== 0) {
        col[k] = j
        val[k] = v
        k++
      }
    }
  }
  start[n] = k
  return { n, d, start, col, val }
}

/** Fraction of x's entries that are not zero. */
export function nonZeroFraction(x: Float32Array): number {
  let nnz = 0
  for (let i = 0; i < x.length; i++) if (x[i] !== 0) nnz++
  return x.length === 0 ? 0 : nnz / x.length
}

/**
 * fma(a, b, c) in float32 (one rounding, as the CPU's vfmadd): a·b of two float32s is exact in a double, and
 * the double sum's rounding error, kept by TwoSum, settles the one case a double rounding gets wrong (a sum that
 * lands exactly halfway between two float32s).
 */
export function fma32(a: number, b: number, c: number): number {
  const p = a * b
  const s = p + c
  const bb = s - p
  const err = p - (s - bb) + (c - bb)
  const r = Math.fround(s)
  if (err === 0 || r === s) return r
  const other = 2 * s - r // the float32 on s's other side when s is a halfway point
  if (Math.fround(other) !== other) return r
  return err > 0 === other > r ? other : r
}

/** MLAS's K stride for an SGEMM with `n` output columns and a K larger than the stride. */
export function sgemmStrideK(n: number): number {
  let strideN = 128
  let strideK = 128
  while (strideN > 16 && strideN / 2 >= n) {
    strideK *= 2
    strideN /= 2
  }
  return strideK
}

/**
 * out [rows.length, c] = x[rows]·W + b, W [d, c], b [c]. `rows` at least 2 (one row: see the module comment).
 */
export function sparseLinearForward(
  x: SparseRows,
  rows: ArrayLike<number>,
  w: Float32Array,
  b: Float32Array,
  c: number,
  out: Float32Array,
): void {
  const strideK = sgemmStrideK(c)
  const acc = new Float64Array(c)
  const part = new Float64Array(c)
  const { start, col, val } = x
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] as number
    for (let t = 0; t < c; t++) acc[t] = b[t] as number
    let k = start[row] as number
    const end = start[row + 1] as number
    for (let k0 = 0; k0 < x.d; k0 += strideK) {
      const k1 = k0 + strideK
      part.fill(0)
      for (; k < end && (col[k] as number) < k1; k++) {
        const v = val[k] as number
        const wRow = (col[k] as number) * c
        for (let t = 0; t < c; t++) part[t] = fma32(v, w[wRow + t] as number, part[t] as number)
      }
      for (let t = 0; t < c; t++) acc[t] = Math.fround((acc[t] as number) + (part[t] as number))
    }
    for (let t = 0; t < c; t++) out[r * c + t] = acc[t] as number
  }
}

/**
 * grad [d, c] = x[rows]ᵀ·dz, dz [rows.length, c]; overwrites grad. `rows.length` at most sgemmStrideK(c) (one
 * stride of K).
 */
export function sparseLinearWeightGrad(
  x: SparseRows,
  rows: ArrayLike<number>,
  dz: Float32Array,
  c: number,
  grad: Float32Array,
): void {
  grad.fill(0)
  const { start, col, val } = x
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] as number
    const end = start[row + 1] as number
    for (let k = start[row] as number; k < end; k++) {
      const v = val[k] as number
      const gRow = (col[k] as number) * c
      for (let t = 0; t < c; t++)
        grad[gRow + t] = fma32(v, dz[r * c + t] as number, grad[gRow + t] as number)
    }
  }
}
