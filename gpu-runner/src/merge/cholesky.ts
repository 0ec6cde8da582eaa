/**
 * Solves A·X = B for a symmetric positive-definite A by Cholesky factorisation (A = L·Lᵀ), in float64: RegMean's
 * closed form (strategies/regmean.ts) needs (Σ G̃_i)⁻¹·Σ G̃_i·W_i, and a solve is cheaper and better conditioned
 * than forming the inverse.
 * @module
 */
import { AppError } from '@twinserve/shared'

/**
 * X = A⁻¹·B. `a` is [n, n] row-major (only its lower triangle is read), `b` is [n, m] row-major; neither is changed.
 * @throws AppError MERGE_FAILED when A is not positive definite (a pivot ≤ 0), naming `what`
 */
export function choleskySolve(
  a: Float64Array,
  n: number,
  b: Float64Array,
  m: number,
  what: string,
): Float64Array {
  const L = new Float64Array(n * n)
  for (let i = 0; i < n; i++) {
    const rowI = i * n
    for (let j = 0; j <= i; j++) {
      const rowJ = j * n
      let s = a[rowI + j] as number
      for (let k = 0; k < j; k++) s -= (L[rowI + k] as number) * (L[rowJ + k] as number)
      if (i === j) {
        if (!(s > 0))
          throw new AppError(
            'MERGE_FAILED',
            `${what}: the matrix is not positive definite (pivot ${i} is ${s})`,
          )
        L[rowI + i] = Math.sqrt(s)
      } else L[rowI + j] = s / (L[rowJ + j] as number)
    }
  }
  // Forward: L·Y = B, then back: Lᵀ·X = Y, all m right-hand sides at once (row operations on [n, m]).
  const x = Float64Array.from(b)
  for (let i = 0; i < n; i++) {
    const at = i * m
    for (let k = 0; k < i; k++) {
      const l = L[i * n + k] as number
      if (l === 0) continue
      const from = k * m
      for (let c = 0; c < m; c++) x[at + c] = (x[at + c] as number) - l * (x[from + c] as number)
    }
    const d = L[i * n + i] as number
    for (let c = 0; c < m; c++) x[at + c] = (x[at + c] as number) / d
  }
  for (let i = n - 1; i >= 0; i--) {
    const at = i * m
    for (let k = i + 1; k < n; k++) {
      const l = L[k * n + i] as number
      if (l === 0) continue
      const from = k * m
      for (let c = 0; c < m; c++) x[at + c] = (x[at + c] as number) - l * (x[from + c] as number)
    }
    const d = L[i * n + i] as number
    for (let c = 0; c < m; c++) x[at + c] = (x[at + c] as number) / d
  }
  return x
}
