import { describe, expect, it } from 'vitest'
import { int8Tensor, int8TensorValues, quantizeFactors } from './int8-factors.ts'

/** Seeded uniform values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 31 - 1
  })
}

/** U·diag(σ)·Vᵀ as [rows, cols]. */
function product(
  u: ArrayLike<number>,
  s: ArrayLike<number>,
  vt: ArrayLike<number>,
  rows: number,
  cols: number,
) {
  const R = s.length
  const out = new Float64Array(rows * cols)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < R; j++)
      for (let k = 0; k < cols; k++)
        out[i * cols + k] =
          (out[i * cols + k] as number) +
          (u[i * R + j] as number) * (s[j] as number) * (vt[j * cols + k] as number)
  return out
}

describe('int8 factors', () => {
  const [rows, cols, R] = [24, 16, 5]
  const u = values(rows * R, 1)
  const vt = values(R * cols, 2)
  const sigma = Float32Array.from([3, 2, 1, 0.5, 0])
  for (let i = 0; i < rows; i++) u[i * R + 4] = 0 // an all-zero rank column keeps scale 1
  const q = quantizeFactors(u, vt, sigma, rows, cols)

  it('folds the per-rank scales into σ: U_q·diag(σ′)·V_qᵀ is U·diag(σ)·Vᵀ to int8 rounding', () => {
    const exact = product(u, sigma, vt, rows, cols)
    const approx = product(q.u, q.sigma, q.vt, rows, cols)
    const scale = Math.max(...exact.map(Math.abs))
    const err = Math.max(...approx.map((v, i) => Math.abs(v - (exact[i] as number))))
    expect(err).toBeGreaterThan(0)
    expect(err).toBeLessThan(0.02 * scale)
    expect(q.sigma[4]).toBe(0)
    expect([...q.u].filter((_, i) => i % R === 4).every((v) => v === 0)).toBe(true)
  })

  it('uses the whole int8 range per rank component: each non-zero U column and Vᵀ row reaches ±127', () => {
    for (let j = 0; j < 4; j++) {
      expect(
        Math.max(...Array.from({ length: rows }, (_, i) => Math.abs(q.u[i * R + j] as number))),
      ).toBe(127)
      expect(Math.max(...Array.from(q.vt.subarray(j * cols, (j + 1) * cols), Math.abs))).toBe(127)
    }
  })

  it('re-quantising its own output is exact (a --from build keeps an expert byte for byte)', () => {
    const again = quantizeFactors(
      Float32Array.from(q.u),
      Float32Array.from(q.vt),
      q.sigma,
      rows,
      cols,
    )
    expect(again.u).toEqual(q.u)
    expect(again.vt).toEqual(q.vt)
    expect(again.sigma).toEqual(q.sigma)
  })

  it('round-trips through an INT8 tensor, raw or int32_data, and refuses a short or non-INT8 one', () => {
    const t = int8Tensor('w.twin_u', q.u, [rows, R])
    expect(t.dataType).toBe(3)
    expect(int8TensorValues(t, rows * R)).toEqual(Float32Array.from(q.u))
    expect(int8TensorValues({ dataType: 3, int32Data: [-127, 0, 5] }, 3)).toEqual(
      Float32Array.from([-127, 0, 5]),
    )
    expect(int8TensorValues(t, rows * R + 1)).toBeUndefined()
    expect(int8TensorValues({ ...t, dataType: 1 }, rows * R)).toBeUndefined()
  })
})
