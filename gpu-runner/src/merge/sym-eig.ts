/**
 * Symmetric eigendecomposition in float64 (Householder tridiagonalisation + implicit QL, the EISPACK
 * tred2/tql2 pair as in JAMA). Used on the small Gram matrices of the randomized SVD (a few dozen rows), where
 * its O(n³) cost is negligible next to the products on onnxruntime.
 * @module
 */
import { AppError } from '@twinserve/shared'

export interface SymEig {
  /** Ascending. */
  values: Float64Array // [n]
  /** Column j is the unit eigenvector of values[j]: vectors[i * n + j]. */
  vectors: Float64Array // [n, n]
}

/**
 * tred2: reduces V (the symmetric matrix, [n, n]) to tridiagonal form in place, accumulating the orthogonal
 * transformations in V; d gets the diagonal, e the subdiagonal.
 */
function tridiagonalize(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j] as number
  for (let i = n - 1; i > 0; i--) {
    let scale = 0
    let h = 0
    for (let k = 0; k < i; k++) scale += Math.abs(d[k] as number)
    if (scale === 0) {
      e[i] = d[i - 1] as number
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j] as number
        V[i * n + j] = 0
        V[j * n + i] = 0
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = (d[k] as number) / scale
        h += (d[k] as number) ** 2
      }
      let f = d[i - 1] as number
      let g = Math.sqrt(h)
      if (f > 0) g = -g
      e[i] = scale * g
      h -= f * g
      d[i - 1] = f - g
      for (let j = 0; j < i; j++) e[j] = 0
      for (let j = 0; j < i; j++) {
        f = d[j] as number
        V[j * n + i] = f
        g = (e[j] as number) + (V[j * n + j] as number) * f
        for (let k = j + 1; k <= i - 1; k++) {
          g += (V[k * n + j] as number) * (d[k] as number)
          e[k] = (e[k] as number) + (V[k * n + j] as number) * f
        }
        e[j] = g
      }
      f = 0
      for (let j = 0; j < i; j++) {
        e[j] = (e[j] as number) / h
        f += (e[j] as number) * (d[j] as number)
      }
      const hh = f / (h + h)
      for (let j = 0; j < i; j++) e[j] = (e[j] as number) - hh * (d[j] as number)
      for (let j = 0; j < i; j++) {
        f = d[j] as number
        g = e[j] as number
        for (let k = j; k <= i - 1; k++)
          V[k * n + j] = (V[k * n + j] as number) - (f * (e[k] as number) + g * (d[k] as number))
        d[j] = V[(i - 1) * n + j] as number
        V[i * n + j] = 0
      }
    }
    d[i] = h
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i] as number
    V[i * n + i] = 1
    const h = d[i + 1] as number
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = (V[k * n + i + 1] as number) / h
      for (let j = 0; j <= i; j++) {
        let g = 0
        for (let k = 0; k <= i; k++) g += (V[k * n + i + 1] as number) * (V[k * n + j] as number)
        for (let k = 0; k <= i; k++) V[k * n + j] = (V[k * n + j] as number) - g * (d[k] as number)
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j] as number
    V[(n - 1) * n + j] = 0
  }
  V[(n - 1) * n + (n - 1)] = 1
  e[0] = 0
}

/** tql2: implicit QL on the tridiagonal (d, e), rotating V alike; d ends up holding the eigenvalues. */
function tridiagonalQl(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i] as number
  e[n - 1] = 0
  let f = 0
  let tst1 = 0
  const eps = 2 ** -52
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l] as number) + Math.abs(e[l] as number))
    let m = l
    while (m < n - 1 && Math.abs(e[m] as number) > eps * tst1) m++
    if (m > l) {
      let iter = 0
      do {
        if (++iter > 60)
          throw new AppError('MERGE_FAILED', `symmetric eigensolver did not converge (n=${n})`)
        let g = d[l] as number
        let p = ((d[l + 1] as number) - g) / (2 * (e[l] as number))
        let r = Math.hypot(p, 1)
        if (p < 0) r = -r
        d[l] = (e[l] as number) / (p + r)
        d[l + 1] = (e[l] as number) * (p + r)
        const dl1 = d[l + 1] as number
        let h = g - (d[l] as number)
        for (let i = l + 2; i < n; i++) d[i] = (d[i] as number) - h
        f += h
        p = d[m] as number
        let c = 1
        let c2 = c
        let c3 = c
        const el1 = e[l + 1] as number
        let s = 0
        let s2 = 0
        for (let i = m - 1; i >= l; i--) {
          c3 = c2
          c2 = c
          s2 = s
          g = c * (e[i] as number)
          h = c * p
          r = Math.hypot(p, e[i] as number)
          e[i + 1] = s * r
          s = (e[i] as number) / r
          c = p / r
          p = c * (d[i] as number) - s * g
          d[i + 1] = h + s * (c * g + s * (d[i] as number))
          for (let k = 0; k < n; k++) {
            const vk1 = V[k * n + i + 1] as number
            const vk = V[k * n + i] as number
            V[k * n + i + 1] = s * vk + c * vk1
            V[k * n + i] = c * vk - s * vk1
          }
        }
        p = (-s * s2 * c3 * el1 * (e[l] as number)) / dl1
        e[l] = s * p
        d[l] = c * p
      } while (Math.abs(e[l] as number) > eps * tst1)
    }
    d[l] = (d[l] as number) + f
    e[l] = 0
  }
}

/** Eigenvalues ascending, the eigenvector columns of V permuted alike. */
function sortAscending(V: Float64Array, d: Float64Array, n: number): SymEig {
  const order = Array.from({ length: n }, (_, i) => i).sort(
    (x, y) => (d[x] as number) - (d[y] as number),
  )
  const values = Float64Array.from(order, (i) => d[i] as number)
  const vectors = new Float64Array(n * n)
  for (let r = 0; r < n; r++)
    for (let c = 0; c < n; c++) vectors[r * n + c] = V[r * n + (order[c] as number)] as number
  return { values, vectors }
}

/** Eigenvalues and eigenvectors of the symmetric matrix `a` ([n, n] row-major; only read, never changed). */
export function symEig(a: ArrayLike<number>, n: number): SymEig {
  const V = Float64Array.from({ length: n * n }, (_, i) => a[i] as number)
  const d = new Float64Array(n)
  const e = new Float64Array(n)
  if (n === 0) return { values: d, vectors: V }
  tridiagonalize(V, d, e, n)
  tridiagonalQl(V, d, e, n)
  return sortAscending(V, d, n)
}
