/**
 * int8 storage of a shared basis (recipe `exclusive.shared_basis` with `dtype: int8`): A [rows, Ri] quantised per
 * column and B [Ro, cols] per row, symmetric, A ≈ A_q·diag(a) and B ≈ diag(b)·B_q, so
 *   A·C_t·B ≈ A_q·(diag(a)·C_t·diag(b))·B_q
 * and the scales fold into the cores, as int8 per-expert factors fold theirs into σ (int8-factors.ts): the graph
 * only Casts. The cores keep float16 (they are T·Ri·Ro values, and their range is the scales').
 * @module
 */
import type { SharedBasis } from './exclusive-factors.ts'

const Q = 127

/** Per-column (A) and per-row (B) symmetric int8, scales folded into the cores [T, Ri, Ro]. */
export function quantizeBasis(
  b: SharedBasis,
  rows: number,
  cols: number,
  T: number,
): { u: Int8Array; v: Int8Array; cores: Float32Array } {
  const { rankIn: Ri, rankOut: Ro } = b
  const a = new Float64Array(Ri) // max |A[:, j]|
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < Ri; j++)
      a[j] = Math.max(a[j] as number, Math.abs(b.u[i * Ri + j] as number))
  const s = new Float64Array(Ro) // max |B[k, :]|
  for (let k = 0; k < Ro; k++)
    for (let c = 0; c < cols; c++)
      s[k] = Math.max(s[k] as number, Math.abs(b.v[k * cols + c] as number))
  // A zero column (row) keeps scale 1.
  for (let j = 0; j < Ri; j++) a[j] = (a[j] as number) > 0 ? (a[j] as number) / Q : 1
  for (let k = 0; k < Ro; k++) s[k] = (s[k] as number) > 0 ? (s[k] as number) / Q : 1
  const u = new Int8Array(rows * Ri)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < Ri; j++)
      u[i * Ri + j] = Math.round((b.u[i * Ri + j] as number) / (a[j] as number))
  const v = new Int8Array(Ro * cols)
  for (let k = 0; k < Ro; k++)
    for (let c = 0; c < cols; c++)
      v[k * cols + c] = Math.round((b.v[k * cols + c] as number) / (s[k] as number))
  const cores = new Float32Array(T * Ri * Ro)
  for (let t = 0; t < T; t++)
    for (let j = 0; j < Ri; j++)
      for (let k = 0; k < Ro; k++) {
        const i = t * Ri * Ro + j * Ro + k
        cores[i] = (b.cores[i] as number) * (a[j] as number) * (s[k] as number)
      }
  return { u, v, cores }
}
