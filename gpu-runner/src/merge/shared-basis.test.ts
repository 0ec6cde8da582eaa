/**
 * The shared basis (issue #18): ΔW_t ≈ A·C_t·B with A, B shared by the experts. Checked on deltas built with a
 * known shared structure, against the definitions (orthonormal bases, C_t = Aᵀ·ΔW_t·Bᵀ, error = what the
 * projection drops), and the budget allocation against its contract.
 */
import { describe, expect, it } from 'vitest'
import { allocateBasisRanks } from './basis-budget.ts'
import { basisExperts, compressSharedBasis, keptEnergy, truncateBasis } from './shared-basis.ts'

const rows = 20
const cols = 14
const T = 4

/** Deltas sharing a rank-6 input and output subspace (plus a little noise of full rank). */
function deltas(seed: number): Float32Array[] {
  let s = seed
  const rnd = () => {
    s = (s * 1103515245 + 12345) % 2 ** 31
    return s / 2 ** 31 - 0.5
  }
  const P = Array.from({ length: rows * 6 }, rnd)
  const Q = Array.from({ length: 6 * cols }, rnd)
  return Array.from({ length: T }, () => {
    const core = Array.from({ length: 36 }, rnd)
    const d = new Float32Array(rows * cols)
    for (let i = 0; i < rows; i++)
      for (let c = 0; c < cols; c++) {
        let v = 0.01 * rnd()
        for (let a = 0; a < 6; a++)
          for (let b = 0; b < 6; b++)
            v +=
              (P[i * 6 + a] as number) * (core[a * 6 + b] as number) * (Q[b * cols + c] as number)
        d[i * cols + c] = v
      }
    return d
  })
}

/** A·C_t·B as a dense [rows, cols] matrix. */
function reconstruct(
  b: { rankIn: number; rankOut: number; u: Float32Array; v: Float32Array; cores: Float32Array },
  t: number,
) {
  const { rankIn: Ri, rankOut: Ro } = b
  const out = new Float64Array(rows * cols)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < Ri; j++)
      for (let k = 0; k < Ro; k++) {
        const a = (b.u[i * Ri + j] as number) * (b.cores[t * Ri * Ro + j * Ro + k] as number)
        for (let c = 0; c < cols; c++)
          out[i * cols + c] = (out[i * cols + c] as number) + a * (b.v[k * cols + c] as number)
      }
  return out
}

const norm2 = (a: ArrayLike<number>) => Array.from(a).reduce((s, x) => s + x * x, 0)

describe('compressSharedBasis', () => {
  const ds = deltas(7)

  it('gives orthonormal bases, cores Aᵀ·ΔW_t·Bᵀ, and errors that are what the projection drops', async () => {
    const { basis, energy } = await compressSharedBasis(ds, rows, cols, 4)
    expect([basis.rankIn, basis.rankOut]).toEqual([4, 4])
    for (let a = 0; a < 4; a++)
      for (let b = 0; b < 4; b++) {
        let uu = 0
        let vv = 0
        for (let i = 0; i < rows; i++)
          uu += (basis.u[i * 4 + a] as number) * (basis.u[i * 4 + b] as number)
        for (let c = 0; c < cols; c++)
          vv += (basis.v[a * cols + c] as number) * (basis.v[b * cols + c] as number)
        expect(uu).toBeCloseTo(a === b ? 1 : 0, 5)
        expect(vv).toBeCloseTo(a === b ? 1 : 0, 5)
      }
    const experts = basisExperts(basis, rows, cols, energy)
    ds.forEach((d, t) => {
      const rec = reconstruct(basis, t)
      const err = Math.sqrt(norm2(Array.from(d, (x, i) => x - (rec[i] as number))) / norm2(d))
      expect(experts[t]?.relError).toBeCloseTo(err, 4)
      // The per-expert SVD form is the same matrix.
      const e = experts[t]
      const k = e?.rank ?? 0
      for (const [i, c] of [
        [0, 0],
        [3, 5],
        [19, 13],
      ] as const) {
        let v = 0
        for (let r = 0; r < k; r++)
          v +=
            (e?.u[i * k + r] as number) * (e?.sigma[r] as number) * (e?.vt[r * cols + c] as number)
        expect(v).toBeCloseTo(rec[i * cols + c] as number, 4)
      }
    })
  })

  it('the error falls with the rank and vanishes once the shared subspace fits; T experts share rank 6, not 4·6', async () => {
    const err = async (R: number) => {
      const { basis, energy } = await compressSharedBasis(ds, rows, cols, R)
      return basisExperts(basis, rows, cols, energy).map((e) => e.relError)
    }
    const [e2, e4, e6] = [await err(2), await err(4), await err(6)]
    for (let t = 0; t < T; t++) {
      expect(e2[t]).toBeGreaterThan(e4[t] as number)
      expect(e4[t]).toBeGreaterThan(e6[t] as number)
      expect(e6[t]).toBeLessThan(0.02) // the noise only
    }
  })

  it('truncation is the lower rank: its reconstruction and keptEnergy agree with compressing at that rank', async () => {
    const big = await compressSharedBasis(ds, rows, cols, 10)
    const small = await compressSharedBasis(ds, rows, cols, 5)
    const cut = truncateBasis(big.basis, rows, cols, T, 5, 5)
    const kept = keptEnergy(big.basis, T)
    let k5 = 0
    for (let t = 0; t < T; t++) {
      const a = reconstruct(cut, t)
      const b = reconstruct(small.basis, t)
      expect(
        Math.sqrt(norm2(Array.from(a, (x, i) => x - (b[i] as number))) / norm2(b)),
      ).toBeLessThan(1e-3)
      k5 += norm2(cut.cores.subarray(t * 25, (t + 1) * 25))
    }
    expect(kept[5]).toBeCloseTo(k5, 6)
    expect(kept[0]).toBe(0)
    for (let k = 1; k < kept.length; k++)
      expect(kept[k]).toBeGreaterThanOrEqual(kept[k - 1] as number)
    expect(kept[10]).toBeCloseTo(norm2(big.basis.cores), 6)
  })
})

describe('allocateBasisRanks', () => {
  it('spends the budget where a byte keeps the most, looking past a step that keeps nothing, and never over it', () => {
    const a = { kept: [0, 10, 12, 13, 13.5], bytes: (k: number) => 10 * k }
    const b = { kept: [0, 0, 30, 31], bytes: (k: number) => 10 * k + k * k }
    const r = allocateBasisRanks([a, b], 40)
    // b's first rank keeps nothing, its second 30 for 24 bytes: taken first; then a's first (1 per byte).
    expect(r.ranks).toEqual([1, 2])
    expect(r.bytes).toBe(34)
    for (const budget of [0, 5, 33, 100, 1000]) {
      const x = allocateBasisRanks([a, b], budget)
      expect(x.bytes).toBeLessThanOrEqual(budget)
    }
    expect(allocateBasisRanks([a, b], 1000).ranks).toEqual([4, 3])
  })
})
