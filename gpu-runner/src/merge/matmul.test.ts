import { afterAll, describe, expect, it } from 'vitest'
import { MatmulBackend } from './matmul.ts'
import { createRng } from './rng.ts'

function ref(
  a: Float32Array,
  [ar, ac]: readonly [number, number],
  b: Float32Array,
  [br, bc]: readonly [number, number],
  tA: boolean,
  tB: boolean,
): Float64Array {
  const m = tA ? ac : ar
  const k = tA ? ar : ac
  const n = tB ? br : bc
  const out = new Float64Array(m * n)
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0
      for (let p = 0; p < k; p++) {
        const av = tA ? a[p * ac + i] : a[i * ac + p]
        const bv = tB ? b[j * bc + p] : b[p * bc + j]
        s += (av as number) * (bv as number)
      }
      out[i * n + j] = s
    }
  return out
}

describe('MatmulBackend (onnxruntime Gemm)', () => {
  const be = new MatmulBackend()
  afterAll(() => be.dispose())
  const r = createRng(5, 'matmul')
  const rand = (n: number) => Float32Array.from({ length: n }, () => r.normal())

  it.each([
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ])('transA=%s transB=%s matches a float64 reference', async (tA, tB) => {
    const m = 13
    const k = 29
    const n = 7
    const aShape = (tA ? [k, m] : [m, k]) as [number, number]
    const bShape = (tB ? [n, k] : [k, n]) as [number, number]
    const a = rand(m * k)
    const b = rand(k * n)
    const y = await be.gemm(a, aShape, b, bShape, { transA: tA, transB: tB })
    const expected = ref(a, aShape, b, bShape, tA, tB)
    expect(y.length).toBe(m * n)
    for (let i = 0; i < y.length; i++) expect(y[i]).toBeCloseTo(expected[i] as number, 4)
  })

  it('reuses one session per transpose combination across shapes, and counts FLOPs', async () => {
    const fresh = new MatmulBackend()
    for (const [m, k, n] of [
      [3, 4, 5],
      [64, 32, 8],
      [1, 100, 1],
    ] as const)
      await fresh.gemm(rand(m * k), [m, k], rand(k * n), [k, n])
    expect(fresh.sessionCount).toBe(1)
    expect(fresh.stats.calls).toBe(3)
    expect(fresh.stats.flops).toBe(2 * (3 * 4 * 5 + 64 * 32 * 8 + 100))
    expect(fresh.stats.large.calls).toBe(0) // all far below 25 MFLOP
    await fresh.gemm(rand(400 * 300), [400, 300], rand(300 * 300), [300, 300])
    expect(fresh.stats.large).toMatchObject({ calls: 1, flops: 2 * 400 * 300 * 300 })
    expect(fresh.provider).toBe('cpu')
    await fresh.dispose()
  })

  it('residualSquared is ‖A − L·Rᵀ‖² (checked against a float64 reference)', async () => {
    const m = 9
    const n = 11
    const k = 3
    const a = rand(m * n)
    const left = rand(m * k)
    const right = rand(n * k)
    const approx = ref(left, [m, k], right, [n, k], false, true)
    let expected = 0
    for (let i = 0; i < m * n; i++) expected += ((a[i] as number) - (approx[i] as number)) ** 2
    const got = await be.residualSquared(a, m, n, left, right, k)
    expect(got / expected).toBeCloseTo(1, 5)
    // rank 0: the whole norm
    const norm = a.reduce((acc, x) => acc + x * x, 0)
    expect(
      await be.residualSquared(a, m, n, new Float32Array(0), new Float32Array(0), 0),
    ).toBeCloseTo(norm, 3)
  })

  it('returns zeros for an empty inner dimension and rejects mismatched shapes', async () => {
    expect(
      Array.from(await be.gemm(new Float32Array(0), [2, 0], new Float32Array(0), [0, 3])),
    ).toEqual([0, 0, 0, 0, 0, 0])
    await expect(be.gemm(rand(6), [2, 3], rand(8), [4, 2])).rejects.toThrow(/do not fit/)
  })
})
