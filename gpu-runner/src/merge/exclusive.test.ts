import { afterAll, describe, expect, it } from 'vitest'
import { knownSvd } from '../../test-support/svd-fixture.ts'
import { compressDelta, compressExclusive } from './exclusive.ts'
import { MatmulBackend } from './matmul.ts'
import { createRng } from './rng.ts'

async function expectRejects(p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await expect(p).rejects.toMatchObject({ code })
  if (message) await expect(p).rejects.toThrow(message)
}

describe('compressDelta', () => {
  const backend = new MatmulBackend()
  afterAll(() => backend.dispose())
  // 300×200 is above the exact path's size limit: the randomized SVD runs.
  const rows = 300
  const cols = 200
  const sigmas = Array.from({ length: cols }, (_, i) => 0.95 ** i)
  const total = sigmas.reduce((s, x) => s + x * x, 0)
  const tailError = (k: number) => Math.sqrt(sigmas.slice(k).reduce((s, x) => s + x * x, 0) / total)

  it('fixed rank, randomized path: factors of the asked shape, measured error near optimal', async () => {
    const a = knownSvd(rows, cols, sigmas, 5)
    const c = await compressDelta(a, rows, cols, { rank: 16 }, { backend })
    expect(c.method).toBe('randomized')
    expect(c.rank).toBe(16)
    expect(c.U.length).toBe(rows * 16)
    expect(c.V.length).toBe(cols * 16)
    expect(c.S.length).toBe(16)
    expect(c.relError).toBeGreaterThanOrEqual(tailError(16) * 0.999)
    expect(c.relError).toBeLessThan(tailError(16) * 1.01)
    for (let i = 1; i < 16; i++) expect(c.S[i] as number).toBeLessThanOrEqual(c.S[i - 1] as number)
  })

  it('is deterministic per seed', async () => {
    const a = knownSvd(rows, cols, sigmas, 6)
    const x = await compressDelta(a, rows, cols, { rank: 8 }, { backend, seed: 3 })
    const y = await compressDelta(a, rows, cols, { rank: 8 }, { backend, seed: 3 })
    expect(x.U).toEqual(y.U)
    expect(x.S).toEqual(y.S)
  })

  it('energy target: the smallest rank that keeps that fraction of ‖v‖²', async () => {
    const a = knownSvd(rows, cols, sigmas, 7)
    for (const energy of [0.5, 0.9, 0.99]) {
      const c = await compressDelta(a, rows, cols, { energy }, { backend })
      // expected from the known spectrum
      let acc = 0
      let k = 0
      while (acc < energy * total) acc += (sigmas[k++] as number) ** 2
      expect(c.method).toBe('randomized')
      expect(c.rank, `energy ${energy}`).toBe(k)
      expect(1 - c.relError ** 2).toBeGreaterThanOrEqual(energy - 1e-4)
    }
  })

  it('energy beyond the first sketch widens it; energy 1 keeps all but float noise', async () => {
    const a = knownSvd(rows, cols, sigmas, 8)
    const c = await compressDelta(a, rows, cols, { energy: 0.9999 }, { backend })
    expect(c.rank).toBeGreaterThan(64)
    expect(c.relError).toBeLessThan(0.011)
    const all = await compressDelta(a, rows, cols, { energy: 1 }, { backend })
    // 1e-6 relative slack: the σ's left out add up to less than that much energy.
    expect(all.rank).toBeGreaterThan(c.rank)
    expect(all.relError ** 2).toBeLessThan(2e-6)
  })

  it('small matrices take the exact path', async () => {
    const a = knownSvd(32, 300, [4, 2, 1, 0.5], 9)
    const c = await compressDelta(a, 32, 300, { rank: 2 }, { backend })
    expect(c.method).toBe('exact')
    expect(Array.from(c.S)).toEqual([expect.closeTo(4, 5), expect.closeTo(2, 5)])
    expect(c.relError).toBeCloseTo(Math.sqrt(1.25 / 21.25), 5)
  })

  it('a rank above the numerical rank returns the numerical rank, error ~0', async () => {
    const a = knownSvd(1000, 100, [3, 2, 1], 10)
    const c = await compressDelta(a, 1000, 100, { rank: 32 }, { backend })
    expect(c.method).toBe('randomized')
    expect(c.rank).toBe(3)
    expect(c.relError).toBeLessThan(1e-5)
    const exact = await compressDelta(
      knownSvd(20, 10, [3, 2, 1], 10),
      20,
      10,
      { rank: 32 },
      { backend },
    )
    expect(exact.rank).toBe(3)
  })

  it('a zero delta has rank 0 and error 0', async () => {
    const c = await compressDelta(new Float32Array(300 * 200), 300, 200, { rank: 4 }, { backend })
    expect(c).toMatchObject({ rank: 0, relError: 0 })
  })

  it('rejects bad input with typed errors, before any work', async () => {
    const a = new Float32Array(12)
    await expectRejects(compressDelta(a, 3, 5, { rank: 2 }), 'INCOMPATIBLE_EXPERTS', /3×5/)
    await expectRejects(compressDelta(a, 3, 4, { rank: 0 }), 'INVALID_REQUEST', /rank/)
    await expectRejects(compressDelta(a, 3, 4, { rank: 1.5 }), 'INVALID_REQUEST', /rank/)
    await expectRejects(compressDelta(a, 3, 4, { energy: 1.5 }), 'INVALID_REQUEST', /energy/)
    await expectRejects(compressDelta(a, 3, 4, { energy: 0 }), 'INVALID_REQUEST', /energy/)
    const nan = Float32Array.from(a)
    nan[7] = Number.NaN
    await expectRejects(compressDelta(nan, 3, 4, { rank: 2 }), 'INVALID_MODEL', /value 7/)
  })
})

describe('compressExclusive', () => {
  const r = createRng(4, 'exclusive')
  it('keeps vectors exact and compresses matrices of v = expert − shared', async () => {
    const shared = Float32Array.from({ length: 6 }, () => r.normal())
    const expert = Float32Array.from(shared, (x, i) => x + i)
    const vec = await compressExclusive(shared, expert, [6], { rank: 1 })
    expect(vec.kind).toBe('vector')
    expect(vec.relError).toBe(0)
    if (vec.kind === 'vector')
      expect(Array.from(vec.delta)).toEqual([0, 1, 2, 3, 4, 5].map((i) => expect.closeTo(i, 5)))

    const v = knownSvd(8, 6, [2, 1], 12)
    const mat = await compressExclusive(new Float32Array(48), v, [8, 6], { rank: 1 })
    expect(mat.kind).toBe('matrix')
    if (mat.kind === 'matrix') {
      expect(mat.shape).toEqual([8, 6])
      expect(mat.rank).toBe(1)
      expect(mat.relError).toBeCloseTo(Math.sqrt(1 / 5), 5)
    }
  })

  it('refuses an expert of another size', async () => {
    await expect(
      compressExclusive(new Float32Array(4), new Float32Array(5), [4], { rank: 1 }),
    ).rejects.toMatchObject({
      code: 'INCOMPATIBLE_EXPERTS',
    })
  })
})
