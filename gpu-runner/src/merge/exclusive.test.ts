import { afterAll, describe, expect, it } from 'vitest'
import { knownSvd } from '../../test-support/svd-fixture.ts'
import { compressDelta } from './exclusive.ts'
import { MatmulBackend } from './matmul.ts'

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
    expect(c.u.length).toBe(rows * 16)
    expect(c.vt.length).toBe(16 * cols)
    expect(c.sigma.length).toBe(16)
    expect(c.relError).toBeGreaterThanOrEqual(tailError(16) * 0.999)
    expect(c.relError).toBeLessThan(tailError(16) * 1.01)
    for (let i = 1; i < 16; i++)
      expect(c.sigma[i] as number).toBeLessThanOrEqual(c.sigma[i - 1] as number)
  })

  it('is deterministic per seed', async () => {
    const a = knownSvd(rows, cols, sigmas, 6)
    const x = await compressDelta(a, rows, cols, { rank: 8 }, { backend, seed: 3 })
    const y = await compressDelta(a, rows, cols, { rank: 8 }, { backend, seed: 3 })
    expect(x.u).toEqual(y.u)
    expect(x.sigma).toEqual(y.sigma)
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
    expect(Array.from(c.sigma)).toEqual([expect.closeTo(4, 5), expect.closeTo(2, 5)])
    expect(c.relError).toBeCloseTo(Math.sqrt(1.25 / 21.25), 5)
    // u·diag(σ)·vt ([32, 2]·[2]·[2, 300]) is the rank-2 approximation whose error was measured.
    let err = 0
    let norm = 0
    for (let i = 0; i < 32; i++)
      for (let j = 0; j < 300; j++) {
        let y = 0
        for (let r = 0; r < 2; r++)
          y += (c.u[i * 2 + r] as number) * (c.sigma[r] as number) * (c.vt[r * 300 + j] as number)
        err += (y - (a[i * 300 + j] as number)) ** 2
        norm += (a[i * 300 + j] as number) ** 2
      }
    expect(Math.sqrt(err / norm)).toBeCloseTo(c.relError, 5)
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
