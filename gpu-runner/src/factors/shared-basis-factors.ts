/**
 * A shared basis (ΔW_t = A·C_t·B, recipe `exclusive.shared_basis`) in the per-expert layout the rest of the runner
 * reads (exclusive-factors.ts): expert t's columns are U_t = A·C_t [rows, Ro] with σ = 1 and Vᵀ_t = B, so
 * Σ_{r: e(r)=t} σ_r·U[:, r] ⊗ Vᵀ[r, :] = A·C_t·B exactly. The materialised merge path rebuilds deltas from it;
 * the twin graph itself serves the basis (build/twin-graph/basis-corrections.ts).
 * @module
 */
import type { MatrixFactors, SharedBasis } from './exclusive-factors.ts'

export function basisAsExpertFactors(
  b: SharedBasis,
  name: string,
  rows: number,
  cols: number,
  T: number,
): MatrixFactors {
  const { rankIn: Ri, rankOut: Ro } = b
  const R = T * Ro
  const u = new Float32Array(rows * R) // [rows, T·Ro]
  const acc = new Float64Array(Ro)
  for (let t = 0; t < T; t++) {
    const core = b.cores.subarray(t * Ri * Ro, (t + 1) * Ri * Ro)
    for (let i = 0; i < rows; i++) {
      acc.fill(0)
      for (let j = 0; j < Ri; j++) {
        const a = b.u[i * Ri + j] as number
        if (a === 0) continue
        for (let k = 0; k < Ro; k++) acc[k] = (acc[k] as number) + a * (core[j * Ro + k] as number)
      }
      for (let k = 0; k < Ro; k++) u[i * R + t * Ro + k] = acc[k] as number
    }
  }
  const vt = new Float32Array(R * cols) // [T·Ro, cols]: B once per expert
  for (let t = 0; t < T; t++) vt.set(b.v, t * Ro * cols)
  return {
    kind: 'matrix',
    name,
    rows,
    cols,
    u,
    sigma: new Float32Array(R).fill(1),
    vt,
    expertOfRank: Int32Array.from({ length: R }, (_, c) => Math.floor(c / Ro)),
    basis: b,
  }
}
