import { afterAll, describe, expect, it } from 'vitest'
import { knownSvd } from '../../test-support/svd-fixture.ts'
import { MatmulBackend } from './matmul.ts'
import { createRng } from './rng.ts'
import { gramSvd, jacobiSvd, orthonormalize, randomizedSvd, type SvdFactors } from './svd.ts'

function reconstruct(f: SvdFactors, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      let s = 0
      for (let p = 0; p < f.r; p++)
        s += (f.U[i * f.r + p] as number) * (f.S[p] as number) * (f.V[j * f.r + p] as number)
      out[i * cols + j] = s
    }
  return out
}

function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0
  let den = 0
  for (let i = 0; i < a.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2
    den += (a[i] as number) ** 2
  }
  return Math.sqrt(num / den)
}

/** Max |XᵀX − I| over the r columns of X ([rows, r]). */
function orthoError(x: Float32Array, rows: number, r: number): number {
  let worst = 0
  for (let p = 0; p < r; p++)
    for (let q = 0; q < r; q++) {
      let dot = 0
      for (let i = 0; i < rows; i++) dot += (x[i * r + p] as number) * (x[i * r + q] as number)
      worst = Math.max(worst, Math.abs(dot - (p === q ? 1 : 0)))
    }
  return worst
}

describe('jacobiSvd (exact)', () => {
  it.each([
    [12, 7],
    [7, 12],
    [9, 9],
    [1, 5],
    [5, 1],
  ])('%i×%i: recovers a known spectrum with orthonormal factors', (rows, cols) => {
    const sigmas = Array.from({ length: Math.min(rows, cols) }, (_, i) => 3 / (i + 1))
    const a = knownSvd(rows, cols, sigmas, rows * 31 + cols)
    const f = jacobiSvd(a, rows, cols)
    expect(f.r).toBe(Math.min(rows, cols))
    for (const [i, s] of sigmas.entries()) expect(f.S[i]).toBeCloseTo(s, 5)
    expect(relDiff(a, reconstruct(f, rows, cols))).toBeLessThan(1e-6)
    expect(orthoError(f.U, rows, f.r)).toBeLessThan(1e-6)
    expect(orthoError(f.V, cols, f.r)).toBeLessThan(1e-6)
  })

  it('reports zero singular values for a rank-deficient matrix', () => {
    const f = jacobiSvd(knownSvd(10, 8, [2, 1], 3), 10, 8)
    expect(f.S[0]).toBeCloseTo(2, 5)
    expect(f.S[1]).toBeCloseTo(1, 5)
    expect(f.S[2] as number).toBeLessThan(1e-6)
  })
})

describe('randomizedSvd (onnxruntime products)', () => {
  const be = new MatmulBackend()
  afterAll(() => be.dispose())

  it('matches the exact SVD on a decaying spectrum', async () => {
    const rows = 300
    const cols = 200
    const sigmas = Array.from({ length: 200 }, (_, i) => 0.9 ** i)
    const a = knownSvd(rows, cols, sigmas, 11)
    const k = 20
    const f = await randomizedSvd(be, a, rows, cols, {
      sketch: k + 10,
      powerIterations: 2,
      keep: k,
      seed: 0,
    })
    expect(f.r).toBe(k)
    for (let i = 0; i < k; i++)
      expect(Math.abs((f.S[i] as number) / (sigmas[i] as number) - 1)).toBeLessThan(1e-3)
    // Reconstruction error within 1% of the optimum (Eckart–Young: the discarded σ's).
    const optimal = Math.sqrt(
      sigmas.slice(k).reduce((s, x) => s + x * x, 0) / sigmas.reduce((s, x) => s + x * x, 0),
    )
    expect(relDiff(a, reconstruct(f, rows, cols))).toBeLessThan(optimal * 1.01)
    expect(orthoError(f.U, rows, k)).toBeLessThan(1e-5)
    expect(orthoError(f.V, cols, k)).toBeLessThan(1e-5)
  })

  it('finds the exact rank of a low-rank matrix without breaking', async () => {
    const a = knownSvd(150, 120, [5, 4, 3, 2, 1], 21)
    const f = await randomizedSvd(be, a, 150, 120, {
      sketch: 30,
      powerIterations: 1,
      keep: 30,
      seed: 0,
    })
    for (let i = 0; i < 5; i++) expect(f.S[i]).toBeCloseTo(5 - i, 4)
    for (let i = 5; i < f.r; i++) expect(f.S[i] as number).toBeLessThan(1e-4)
    expect(relDiff(a, reconstruct(f, 150, 120))).toBeLessThan(1e-5)
  })

  it('orthonormalize returns an orthonormal basis and drops dependent columns', async () => {
    // 4 columns, the last the sum of the first two.
    const r = createRng(2, 'orth')
    const rows = 50
    const y = new Float32Array(rows * 4)
    for (let i = 0; i < rows; i++) {
      const [x0, x1, x2] = [r.normal(), r.normal(), r.normal()]
      y.set([x0, x1, x2, x0 + x1], i * 4)
    }
    const { Q, cols } = await orthonormalize(be, y, rows, 4)
    expect(cols).toBe(3)
    expect(orthoError(Q, rows, cols)).toBeLessThan(1e-5)
  })
})

describe('gramSvd (the sketch-sized SVD)', () => {
  it('agrees with the exact Jacobi SVD', () => {
    const a = knownSvd(30, 20, [5, 3, 2, 1, 0.5, 0.1], 41)
    const g = gramSvd(a, 30, 20)
    const j = jacobiSvd(a, 30, 20)
    for (let i = 0; i < 6; i++) expect(g.S[i]).toBeCloseTo(j.S[i] as number, 5)
    expect(
      relDiff(
        a,
        reconstruct(
          {
            ...g,
            r: 6,
            U: firstCols(g.U, 30, 20, 6),
            V: firstCols(g.V, 20, 20, 6),
            S: g.S.slice(0, 6),
          },
          30,
          20,
        ),
      ),
    ).toBeLessThan(1e-5)
  })
})

function firstCols(m: Float32Array, rows: number, c: number, k: number): Float32Array {
  const out = new Float32Array(rows * k)
  for (let i = 0; i < rows; i++) out.set(m.subarray(i * c, i * c + k), i * k)
  return out
}
