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
  /** ‖ΔW_t‖²_F per expert. */
  energy: number[]
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
 * @example const { basis } = await compressSharedBasis(deltas, 784, 256, 96)
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
  const energy: number[] = []
  for (const [t, d] of deltas.entries()) {
    let e = 0
    for (let i = 0; i < d.length; i++) e += (d[i] as number) ** 2
    energy.push(e)
    if (Ri === 0 || Ro === 0) continue
    const ad = await be.gemm(A, [rows, Ri], d, [rows, cols], { transA: true }) // [Ri, cols]
    const core = await be.gemm(ad, [Ri, cols], B, [Ro, cols], { transB: true }) // [Ri, Ro]
    cores.set(core, t * Ri * Ro)
  }
  return { basis: { rankIn: Ri, rankOut: Ro, u: A, v: B, cores }, energy }
}

/**
 * The basis cut to its leading ri input-side and ro output-side components. The SVD's bases are nested (the
 * leading k columns of the rank-R basis are the rank-k basis), so this is the basis compressSharedBasis gives at
 * the smaller ranks, and its cores are the leading blocks of the larger cores.
 */
export function truncateBasis(
  b: SharedBasis,
  rows: number,
  cols: number,
  T: number,
  ri: number,
  ro: number,
): SharedBasis {
  const { rankIn: Ri, rankOut: Ro } = b
  if (ri >= Ri && ro >= Ro) return b
  ri = Math.min(ri, Ri)
  ro = Math.min(ro, Ro)
  const u = new Float32Array(rows * ri)
  for (let i = 0; i < rows; i++) u.set(b.u.subarray(i * Ri, i * Ri + ri), i * ri)
  const cores = new Float32Array(T * ri * ro)
  for (let t = 0; t < T; t++)
    for (let j = 0; j < ri; j++)
      cores.set(
        b.cores.subarray(t * Ri * Ro + j * Ro, t * Ri * Ro + j * Ro + ro),
        t * ri * ro + j * ro,
      )
  return { rankIn: ri, rankOut: ro, u, v: b.v.slice(0, ro * cols), cores }
}

/**
 * What the basis cut to rank k (each side min(k, its rank)) keeps of every expert's delta, Σ_t ‖C_t[:k, :k]‖²,
 * for k = 0 … max(Ri, Ro): the gains a byte budget allocates (A and B orthonormal, so this is exactly
 * Σ_t ‖ΔW_t‖² minus the squared error).
 */
export function keptEnergy(b: SharedBasis, T: number): Float64Array {
  const { rankIn: Ri, rankOut: Ro } = b
  const K = Math.max(Ri, Ro)
  const out = new Float64Array(K + 1)
  for (let k = 1; k <= K; k++) {
    // From the cut [ri0, ro0] to [ri1, ro1]: the new rows j ∈ [ri0, ri1) over every kept column, and the new
    // columns o ∈ [ro0, ro1) over the old rows.
    const ri0 = Math.min(k - 1, Ri)
    const ro0 = Math.min(k - 1, Ro)
    const ri1 = Math.min(k, Ri)
    const ro1 = Math.min(k, Ro)
    let add = 0
    for (let t = 0; t < T; t++) {
      const base = t * Ri * Ro
      for (let j = ri0; j < ri1; j++)
        for (let o = 0; o < ro1; o++) add += (b.cores[base + j * Ro + o] as number) ** 2
      for (let j = 0; j < ri0; j++)
        for (let o = ro0; o < ro1; o++) add += (b.cores[base + j * Ro + o] as number) ** 2
    }
    out[k] = (out[k - 1] as number) + add
  }
  return out
}

/**
 * Each expert's A·C_t·B in per-expert SVD form (orthonormal u, vt; σ descending): C_t = P·diag(σ)·Qᵀ gives
 * u = A·P, vt = Qᵀ·B, with relError ‖ΔW_t − A·C_t·B‖_F / ‖ΔW_t‖_F (from `energy`, ‖ΔW_t‖²).
 */
export function basisExperts(
  b: SharedBasis,
  rows: number,
  cols: number,
  energy: readonly number[],
): CompressedDelta[] {
  const { rankIn: Ri, rankOut: Ro } = b
  return energy.map((e, t) =>
    Ri === 0 || Ro === 0
      ? empty(e)
      : perExpert(
          b.cores.subarray(t * Ri * Ro, (t + 1) * Ri * Ro),
          b.u,
          b.v,
          rows,
          cols,
          Ri,
          Ro,
          e,
        ),
  )
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
  core: ArrayLike<number>,
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
