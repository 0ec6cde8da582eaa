/**
 * A basis shared by every expert (recipe `exclusive.shared_basis`, issue #18): for one weight W [rows, cols] and
 * the experts' deltas ΔW_t,
 *   A [rows, Ri]  the leading left singular vectors of [ΔW_1 … ΔW_T]   (side by side, [rows, T·cols])
 *   B [Ro, cols]  the leading right singular vectors of [ΔW_1; …; ΔW_T] (stacked, [T·rows, cols])
 *   C_t = Aᵀ·ΔW_t·Bᵀ [Ri, Ro]
 * so A·C_t·B = P_A·ΔW_t·P_B, the orthogonal projection of ΔW_t onto the two shared subspaces: the best
 * approximation of every ΔW_t that lives in them, with error ‖ΔW_t‖² − ‖C_t‖² (A and B orthonormal). The bases
 * are chosen for all experts at once (they maximise Σ_t of what one side's projection keeps), so experts that
 * change the same directions share their rank, and the bytes grow with R·(rows + cols) + T·Ri·Ro rather than
 * T·r·(rows + cols).
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { SharedBasis } from '../factors/exclusive-factors.ts'
import { type CompressedDelta, type CompressOptions, compressDelta } from './exclusive.ts'
import { defaultMatmulBackend } from './matmul.ts'
import { jacobiSvd } from './svd.ts'

export interface SharedBasisResult {
  basis: SharedBasis
  /**
   * Each expert's A·C_t·B in per-expert SVD form (orthonormal u, vt; σ descending): C_t = P·diag(σ)·Qᵀ gives
   * u = A·P, vt = Qᵀ·B. relError is ‖ΔW_t − A·C_t·B‖_F / ‖ΔW_t‖_F.
   */
  experts: CompressedDelta[]
}

/** Core singular values below the largest times this are float32 noise, not rank. */
const RANK_TOL = 1e-6

/** [rows, k]·[k, n] in float64 accumulation (small products: cores and their SVD factors). */
function product(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number) {
  const out = new Float32Array(m * n)
  const row = new Float64Array(n)
  for (let i = 0; i < m; i++) {
    row.fill(0)
    for (let j = 0; j < k; j++) {
      const x = a[i * k + j] as number
      if (x === 0) continue
      for (let c = 0; c < n; c++) row[c] = (row[c] as number) + x * (b[j * n + c] as number)
    }
    out.set(row, i * n)
  }
  return out
}

/**
 * The shared basis of one matrix's expert deltas (row-major [rows, cols] each) at basis rank `rank` (each side
 * capped at its stacked matrix's size, and at its numerical rank).
 * @example const { basis, experts } = await compressSharedBasis(deltas, 784, 256, 96)
 */
export async function compressSharedBasis(
  deltas: readonly Float32Array[],
  rows: number,
  cols: number,
  rank: number,
  opts: CompressOptions = {},
): Promise<SharedBasisResult> {
  const T = deltas.length
  if (T === 0) throw new AppError('INVALID_REQUEST', 'compressSharedBasis: no experts')
  if (!Number.isInteger(rank) || rank < 1)
    throw new AppError(
      'INVALID_REQUEST',
      `shared_basis rank must be a positive integer, got ${rank}`,
    )
  for (const d of deltas)
    if (d.length !== rows * cols)
      throw new AppError(
        'INCOMPATIBLE_EXPERTS',
        `compressSharedBasis: ${d.length} values do not fill a ${rows}×${cols} matrix`,
      )
  const be = opts.backend ?? defaultMatmulBackend()
  const wide = new Float32Array(rows * T * cols) // [rows, T·cols] = [ΔW_1 … ΔW_T]
  for (let i = 0; i < rows; i++)
    deltas.forEach((d, t) => {
      wide.set(d.subarray(i * cols, (i + 1) * cols), i * T * cols + t * cols)
    })
  const tall = new Float32Array(T * rows * cols) // [T·rows, cols] = [ΔW_1; …; ΔW_T]
  deltas.forEach((d, t) => {
    tall.set(d, t * rows * cols)
  })
  const left = await compressDelta(
    wide,
    rows,
    T * cols,
    { rank: Math.min(rank, rows, T * cols) },
    opts,
  )
  const right = await compressDelta(
    tall,
    T * rows,
    cols,
    { rank: Math.min(rank, cols, T * rows) },
    opts,
  )
  const Ri = left.rank
  const Ro = right.rank
  const A = left.u // [rows, Ri], orthonormal columns
  const B = right.vt // [Ro, cols], orthonormal rows
  const cores = new Float32Array(T * Ri * Ro)
  const experts: CompressedDelta[] = []
  for (const [t, d] of deltas.entries()) {
    let energy = 0
    for (let i = 0; i < d.length; i++) energy += (d[i] as number) ** 2
    if (Ri === 0 || Ro === 0) {
      experts.push(empty(energy))
      continue
    }
    const ad = await be.gemm(A, [rows, Ri], d, [rows, cols], { transA: true }) // [Ri, cols]
    const core = await be.gemm(ad, [Ri, cols], B, [Ro, cols], { transB: true }) // [Ri, Ro]
    cores.set(core, t * Ri * Ro)
    experts.push(perExpert(core, A, B, rows, cols, Ri, Ro, energy))
  }
  return { basis: { rankIn: Ri, rankOut: Ro, u: A, v: B, cores }, experts }
}

function empty(energy: number): CompressedDelta {
  return {
    u: new Float32Array(0),
    sigma: new Float32Array(0),
    vt: new Float32Array(0),
    rank: 0,
    relError: energy > 0 ? 1 : 0,
    method: 'exact',
  }
}

/** A·C·B as an SVD: C = P·diag(σ)·Qᵀ (exact Jacobi on the small core), u = A·P, vt = Qᵀ·B. */
function perExpert(
  core: Float32Array,
  A: Float32Array,
  B: Float32Array,
  rows: number,
  cols: number,
  Ri: number,
  Ro: number,
  energy: number,
): CompressedDelta {
  const f = jacobiSvd(core, Ri, Ro)
  const top = f.S[0] ?? 0
  let k = 0
  while (k < f.r && (f.S[k] as number) > top * RANK_TOL) k++
  if (k === 0) return empty(energy)
  const P = new Float32Array(Ri * k) // [Ri, k]
  for (let i = 0; i < Ri; i++) for (let j = 0; j < k; j++) P[i * k + j] = f.U[i * f.r + j] as number
  const Qt = new Float32Array(k * Ro) // [k, Ro]
  for (let j = 0; j < k; j++)
    for (let o = 0; o < Ro; o++) Qt[j * Ro + o] = f.V[o * f.r + j] as number
  let kept = 0
  for (let j = 0; j < k; j++) kept += (f.S[j] as number) ** 2
  return {
    u: product(A, P, rows, Ri, k),
    sigma: f.S.slice(0, k),
    vt: product(Qt, B, k, Ro, cols),
    rank: k,
    // A and B are orthonormal: what the projection keeps is ‖C‖², the rest is the error.
    relError: energy > 0 ? Math.sqrt(Math.max(0, 1 - kept / energy)) : 0,
    method: 'exact',
  }
}
