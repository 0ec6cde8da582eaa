/**
 * Exclusive knowledge of one tensor, in the one layout every part of Twinserve uses: the SVD compression
 * produces it per expert (merge/exclusive.ts), the builder stacks it over experts and writes it into the twin
 * graph under the naming convention (shared/src/schemas/twin-package.ts), and the runner reads it back from the
 * graph for materialised merges (model/materialize.ts).
 *
 * A matrix W (stored [rows, cols]) carries ΔW_t ≈ Σ_{r : e(r)=t} σ_r · U[:, r] ⊗ Vᵀ[r, :]; a vector p carries each
 * expert's exact Δp_t.
 * @module
 */

/** A rank-R factorisation U·diag(σ)·Vᵀ of a [rows, cols] matrix. */
export interface LowRankFactors {
  /** [rows, R] */
  u: Float32Array
  /** [R] singular values */
  sigma: Float32Array
  /** [R, cols] (Vᵀ, as the twin graph stores it) */
  vt: Float32Array
}

/** One exclusive matrix: every expert's low-rank delta, stacked column-wise. */
export interface MatrixFactors extends LowRankFactors {
  kind: 'matrix'
  /** Initializer name of the weight in the base graph. */
  name: string
  /** Stored layout [rows, cols] of the weight. */
  rows: number
  cols: number
  /** [R] expert index of each rank column (R = Σ_t rank_t; ranks may differ per expert). */
  expertOfRank: Int32Array
  /**
   * Present when the matrix is stored and served as one basis shared by the experts (factors/shared-basis.ts):
   * then u, σ, vt above are the same deltas in per-expert SVD form (for the router, the report and verification),
   * and the twin graph stores the basis instead of them.
   */
  basis?: SharedBasis
}

/**
 * One basis shared by all experts: ΔW_t = A·C_t·B with A [rows, rankIn], B [rankOut, cols] shared and a small core
 * C_t [rankIn, rankOut] per expert (recipe `exclusive.shared_basis`).
 */
export interface SharedBasis {
  rankIn: number
  rankOut: number
  /** A [rows, rankIn] */
  u: Float32Array
  /** B [rankOut, cols] */
  v: Float32Array
  /** [T, rankIn, rankOut] */
  cores: Float32Array
}

/** One exclusive vector: every expert's exact delta. */
export interface VectorFactors {
  kind: 'vector'
  name: string
  size: number
  /** [T, size], row t = expert t's delta. */
  delta: Float32Array
}

export type ExclusiveFactors = MatrixFactors | VectorFactors

/** Factors together with the tensor's shared value θ_s ([rows·cols] or [size]), as the runner holds them. */
export type FactorsWithShared = ExclusiveFactors & { shared: Float32Array }

/**
 * Stacks per-expert factorisations (expert t's factors rank_t wide) into one matrix's factors, experts in order.
 * @returns undefined when every expert has rank 0 (the matrix then carries no exclusive knowledge)
 */
export function stackExperts(
  name: string,
  rows: number,
  cols: number,
  perExpert: readonly LowRankFactors[],
): MatrixFactors | undefined {
  const R = perExpert.reduce((a, p) => a + p.sigma.length, 0)
  if (R === 0) return undefined
  const u = new Float32Array(rows * R) // [rows, R]
  const vt = new Float32Array(R * cols) // [R, cols]
  const sigma = new Float32Array(R)
  const expertOfRank = new Int32Array(R)
  let col = 0
  perExpert.forEach((p, t) => {
    const k = p.sigma.length
    for (let i = 0; i < rows; i++) u.set(p.u.subarray(i * k, (i + 1) * k), i * R + col)
    vt.set(p.vt, col * cols)
    sigma.set(p.sigma, col)
    expertOfRank.fill(t, col, col + k)
    col += k
  })
  return { kind: 'matrix', name, rows, cols, u, sigma, vt, expertOfRank }
}

/** The tensor's shape: [rows, cols] or [size]. */
export function shapeOf(f: ExclusiveFactors): number[] {
  return f.kind === 'matrix' ? [f.rows, f.cols] : [f.size]
}

/** The rank columns of expert t, in order. */
export function columnsOf(f: MatrixFactors, t: number): number[] {
  const out: number[] = []
  f.expertOfRank.forEach((e, c) => {
    if (e === t) out.push(c)
  })
  return out
}

/**
 * Expert t's own factors, its rank columns taken out of the stack in order (the inverse of stackExperts for one
 * expert): the values are copied unchanged, so restacking them reproduces that expert's columns exactly.
 */
export function expertFactors(f: MatrixFactors, t: number): LowRankFactors {
  const cols = columnsOf(f, t)
  const R = f.sigma.length
  const k = cols.length
  const u = new Float32Array(f.rows * k) // [rows, k]
  const vt = new Float32Array(k * f.cols) // [k, cols]
  const sigma = new Float32Array(k)
  cols.forEach((src, j) => {
    for (let i = 0; i < f.rows; i++) u[i * k + j] = f.u[i * R + src] as number
    vt.set(f.vt.subarray(src * f.cols, (src + 1) * f.cols), j * f.cols)
    sigma[j] = f.sigma[src] as number
  })
  return { u, sigma, vt }
}
