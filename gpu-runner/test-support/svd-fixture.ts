/** Test matrices with a known SVD (shared by the SVD and compression tests). */
import { createRng } from '../src/merge/index.ts'

/** Random orthonormal columns ([rows, r], Gram–Schmidt twice in float64). */
function orthonormal(rows: number, r: number, seed: number): Float64Array {
  const rng = createRng(seed, 'orthonormal')
  const q = Float64Array.from({ length: rows * r }, () => rng.normal())
  for (let j = 0; j < r; j++)
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        let dot = 0
        for (let i = 0; i < rows; i++) dot += (q[i * r + j] as number) * (q[i * r + p] as number)
        for (let i = 0; i < rows; i++)
          q[i * r + j] = (q[i * r + j] as number) - dot * (q[i * r + p] as number)
      }
      let norm = 0
      for (let i = 0; i < rows; i++) norm += (q[i * r + j] as number) ** 2
      norm = Math.sqrt(norm)
      for (let i = 0; i < rows; i++) q[i * r + j] = (q[i * r + j] as number) / norm
    }
  return q
}

/** A = U·diag(sigmas)·Vᵀ with random orthonormal U, V: a matrix whose SVD is known. */
export function knownSvd(
  rows: number,
  cols: number,
  sigmas: readonly number[],
  seed: number,
): Float32Array {
  const r = sigmas.length
  const U = orthonormal(rows, r, seed)
  const V = orthonormal(cols, r, seed + 1)
  const a = new Float32Array(rows * cols)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let s = 0
      for (let p = 0; p < r; p++)
        s += (U[i * r + p] as number) * (sigmas[p] as number) * (V[j * r + p] as number)
      a[i * cols + j] = s
    }
  return a
}
