/**
 * Truncated SVD of a task-vector matrix, two ways:
 * - `jacobiSvd`: exact one-sided Jacobi (Hestenes) in float64, for small matrices.
 * - `randomizedSvd`: the randomized range finder with power iterations (Halko, Martinsson & Tropp 2011,
 *   Alg. 4.4), re-orthonormalizing after every product. Every product with the big matrix runs on onnxruntime
 *   (`MatmulBackend`); JS only touches l×l matrices (l = rank + oversampling). Orthonormalization is
 *   eigen-based "CholeskyQR2" (Gram matrix → eigenvectors → scale, twice), which also reveals rank deficiency
 *   instead of breaking on it.
 * @see https://arxiv.org/abs/0909.4061
 * @module
 */
import type { MatmulBackend } from './matmul.ts'
import { createRng, type Rng } from './rng.ts'
import { symEig } from './sym-eig.ts'

/** A (possibly truncated) SVD: A ≈ U·diag(S)·Vᵀ, singular values descending. */
export interface SvdFactors {
  U: Float32Array // [rows, r]
  S: Float32Array // [r]
  V: Float32Array // [cols, r]
  r: number
}

/**
 * Exact SVD by one-sided Jacobi rotations in float64: orthogonalizes the columns of A (or of Aᵀ when A is wide)
 * until every pair is orthogonal to machine precision. Cost ~ sweeps·min(m,n)²·max(m,n), so small matrices only.
 */
export function jacobiSvd(a: ArrayLike<number>, rows: number, cols: number): SvdFactors {
  const wide = cols > rows
  const p = wide ? cols : rows // column length
  const q = wide ? rows : cols // number of columns
  // X's columns: A's columns (tall) or A's rows (wide, i.e. Aᵀ's columns).
  const X = Array.from({ length: q }, (_, j) => {
    const col = new Float64Array(p)
    for (let i = 0; i < p; i++) col[i] = (wide ? a[j * cols + i] : a[i * cols + j]) as number
    return col
  })
  const W = Array.from({ length: q }, (_, j) => {
    const col = new Float64Array(q)
    col[j] = 1
    return col
  })
  const eps = 1e-15
  for (let sweep = 0; sweep < 100; sweep++) {
    let rotated = false
    for (let i = 0; i < q - 1; i++)
      for (let j = i + 1; j < q; j++) {
        const xi = X[i] as Float64Array
        const xj = X[j] as Float64Array
        let alpha = 0
        let beta = 0
        let gamma = 0
        for (let k = 0; k < p; k++) {
          const u = xi[k] as number
          const v = xj[k] as number
          alpha += u * u
          beta += v * v
          gamma += u * v
        }
        if (gamma === 0 || Math.abs(gamma) <= eps * Math.sqrt(alpha * beta)) continue
        rotated = true
        const zeta = (beta - alpha) / (2 * gamma)
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta))
        const c = 1 / Math.sqrt(1 + t * t)
        const s = c * t
        for (let k = 0; k < p; k++) {
          const u = xi[k] as number
          const v = xj[k] as number
          xi[k] = c * u - s * v
          xj[k] = s * u + c * v
        }
        const wi = W[i] as Float64Array
        const wj = W[j] as Float64Array
        for (let k = 0; k < q; k++) {
          const u = wi[k] as number
          const v = wj[k] as number
          wi[k] = c * u - s * v
          wj[k] = s * u + c * v
        }
      }
    if (!rotated) break
  }
  const sigma = X.map((x) => Math.sqrt(x.reduce((acc, v) => acc + v * v, 0)))
  const order = sigma.map((_, j) => j).sort((x, y) => (sigma[y] as number) - (sigma[x] as number))
  // X = A·W (tall) has orthogonal columns x_j = σ_j·u_j, so A = U·Σ·Wᵀ; for wide A the roles of U and W swap.
  const left = new Float32Array(p * q) // [p, q]
  const right = new Float32Array(q * q) // [q, q]
  const S = new Float32Array(q)
  order.forEach((j, r) => {
    const s = sigma[j] as number
    S[r] = s
    const x = X[j] as Float64Array
    const w = W[j] as Float64Array
    for (let k = 0; k < p; k++) left[k * q + r] = s > 0 ? (x[k] as number) / s : 0
    for (let k = 0; k < q; k++) right[k * q + r] = w[k] as number
  })
  return wide ? { U: right, S, V: left, r: q } : { U: left, S, V: right, r: q }
}

/**
 * SVD of a small dense matrix R ([rows, cols], rows and cols up to the sketch width) through the float64
 * eigendecomposition of RᵀR: O(cols³) instead of Jacobi's O(sweeps·cols²·rows), and since R itself comes
 * from float32 products, squaring it in float64 loses nothing that matters.
 */
export function gramSvd(r: Float32Array, rows: number, cols: number): SvdFactors {
  const g = new Float64Array(cols * cols) // RᵀR, [cols, cols]
  for (let i = 0; i < rows; i++)
    for (let p = 0; p < cols; p++) {
      const rp = r[i * cols + p] as number
      if (rp === 0) continue
      for (let q = p; q < cols; q++)
        g[p * cols + q] = (g[p * cols + q] as number) + rp * (r[i * cols + q] as number)
    }
  for (let p = 0; p < cols; p++)
    for (let q = 0; q < p; q++) g[p * cols + q] = g[q * cols + p] as number
  const { values, vectors } = symEig(g, cols)
  const k = Math.min(rows, cols)
  const U = new Float32Array(rows * k) // [rows, k]
  const S = new Float32Array(k)
  const V = new Float32Array(cols * k) // [cols, k]
  for (let t = 0; t < k; t++) {
    const j = cols - 1 - t // descending
    const sigma = Math.sqrt(Math.max(0, values[j] as number))
    S[t] = sigma
    for (let p = 0; p < cols; p++) V[p * k + t] = vectors[p * cols + j] as number
    if (sigma === 0) continue
    for (let i = 0; i < rows; i++) {
      let s = 0
      for (let p = 0; p < cols; p++)
        s += (r[i * cols + p] as number) * (vectors[p * cols + j] as number)
      U[i * k + t] = s / sigma
    }
  }
  return { U, S, V, r: k }
}

/** Below these relative eigenvalues a Gram direction counts as absent (first pass: only ~zeros). */
const ORTH_TOL = [1e-10, 1e-5] as const

/**
 * Orthonormal basis of the columns of Y ([rows, c]): passes of G = YᵀY = WΛWᵀ, Y ← Y·W·Λ^(-1/2), dropping
 * directions whose eigenvalue is negligible. One pass leaves an orthogonality error of about κ(Y)²·ε (enough
 * inside the power iterations, which only need a well-conditioned basis); the second makes it ~ε.
 * Returns the basis and its width (≤ c; 0 for Y = 0).
 */
export async function orthonormalize(
  be: MatmulBackend,
  y: Float32Array,
  rows: number,
  c: number,
  passes: 1 | 2 = 2,
): Promise<{ Q: Float32Array; cols: number }> {
  let Q = y
  let cols = c
  for (const tol of ORTH_TOL.slice(0, passes)) {
    if (cols === 0) break
    const G = await be.gemm(Q, [rows, cols], Q, [rows, cols], { transA: true }) // [cols, cols]
    // Symmetrize: float32 rounding can make G[i][j] and G[j][i] differ in the last bit.
    const g64 = new Float64Array(cols * cols)
    for (let i = 0; i < cols; i++)
      for (let j = 0; j < cols; j++)
        g64[i * cols + j] = ((G[i * cols + j] as number) + (G[j * cols + i] as number)) / 2
    const { values, vectors } = symEig(g64, cols)
    const top = values[cols - 1] as number
    const keep: number[] = []
    for (let j = cols - 1; j >= 0; j--)
      if ((values[j] as number) > tol * top && top > 0) keep.push(j)
    const T = new Float32Array(cols * keep.length) // [cols, kept]
    keep.forEach((j, jj) => {
      const inv = 1 / Math.sqrt(values[j] as number)
      for (let i = 0; i < cols; i++)
        T[i * keep.length + jj] = (vectors[i * cols + j] as number) * inv
    })
    Q = await be.gemm(Q, [rows, cols], T, [cols, keep.length]) // [rows, kept]
    cols = keep.length
  }
  return { Q, cols }
}

export interface RandomizedSvdOptions {
  /** Width of the sketch: target rank + oversampling (capped at min(rows, cols)). */
  sketch: number
  /** Power iterations; each sharpens the spectrum at the cost of two more products with A. */
  powerIterations: number
  /** Keep at most this many components of the result. */
  keep: number
  /** Seed of the Gaussian test matrix. */
  seed: number
}

const sketchCache = new Map<string, Float32Array>()
/** How many test matrices to keep: a model has only a few distinct shapes. */
const SKETCH_CACHE_SIZE = 8

/**
 * The Gaussian test matrix Ω ([cols, l]) for a seed and shape. Deterministic, so it is cached: generating
 * it costs more than the JS side of a whole rank-32 compression otherwise.
 */
export function gaussianSketch(cols: number, l: number, seed: number): Float32Array {
  const key = `${seed}:${cols}x${l}`
  const hit = sketchCache.get(key)
  if (hit) return hit
  const rng: Rng = createRng(seed, 'svd-sketch', key)
  const omega = new Float32Array(cols * l)
  for (let i = 0; i < omega.length; i++) omega[i] = rng.normal()
  if (sketchCache.size >= SKETCH_CACHE_SIZE) {
    const oldest = sketchCache.keys().next().value
    if (oldest !== undefined) sketchCache.delete(oldest)
  }
  sketchCache.set(key, omega)
  return omega
}

/** Takes the first k columns of a [rows, c] row-major matrix. */
function firstColumns(m: Float32Array, rows: number, c: number, k: number): Float32Array {
  if (k === c) return m
  const out = new Float32Array(rows * k)
  for (let i = 0; i < rows; i++) out.set(m.subarray(i * c, i * c + k), i * k)
  return out
}

/**
 * Randomized truncated SVD of A ([rows, cols] float32). All products with A run on `be`.
 * Returns up to `keep` components (fewer when A's numerical rank is lower).
 */
export async function randomizedSvd(
  be: MatmulBackend,
  a: Float32Array,
  rows: number,
  cols: number,
  opts: RandomizedSvdOptions,
): Promise<SvdFactors> {
  const l = Math.min(opts.sketch, rows, cols)
  // A sketch as wide as the smaller side spans A's whole range already: no power iterations needed.
  const q = l >= Math.min(rows, cols) ? 0 : opts.powerIterations
  const omega = gaussianSketch(cols, l, opts.seed) // [cols, l]
  // Intermediate bases get one orthonormalization pass, the final Q two.
  let { Q, cols: c } = await orthonormalize(
    be,
    await be.gemm(a, [rows, cols], omega, [cols, l]),
    rows,
    l,
    q > 0 ? 1 : 2,
  )
  for (let it = 0; it < q && c > 0; it++) {
    const z = await orthonormalize(
      be,
      await be.gemm(a, [rows, cols], Q, [rows, c], { transA: true }),
      cols,
      c,
      1,
    )
    const y = await orthonormalize(
      be,
      await be.gemm(a, [rows, cols], z.Q, [cols, z.cols]),
      rows,
      z.cols,
      it === q - 1 ? 2 : 1,
    )
    Q = y.Q
    c = y.cols
  }
  if (c === 0)
    return { U: new Float32Array(0), S: new Float32Array(0), V: new Float32Array(0), r: 0 }
  // Bᵀ = AᵀQ ([cols, c]) = Q₂·R with Q₂ orthonormal; R = Ur·Σ·Vrᵀ (small, exact);
  // so B = Vr·Σ·(Q₂Ur)ᵀ and A ≈ Q·B = (Q·Vr)·Σ·(Q₂·Ur)ᵀ.
  const bt = await be.gemm(a, [rows, cols], Q, [rows, c], { transA: true }) // [cols, c]
  const { Q: Q2, cols: c2 } = await orthonormalize(be, bt, cols, c)
  if (c2 === 0)
    return { U: new Float32Array(0), S: new Float32Array(0), V: new Float32Array(0), r: 0 }
  const R = await be.gemm(Q2, [cols, c2], bt, [cols, c], { transA: true }) // [c2, c]
  const small = gramSvd(R, c2, c) // Ur [c2, r], S [r], Vr [c, r]
  const k = Math.min(opts.keep, small.r)
  const Ur = firstColumns(small.U, c2, small.r, k)
  const Vr = firstColumns(small.V, c, small.r, k)
  const U = await be.gemm(Q, [rows, c], Vr, [c, k]) // [rows, k]
  const V = await be.gemm(Q2, [cols, c2], Ur, [c2, k]) // [cols, k]
  return { U, S: small.S.slice(0, k), V, r: k }
}
