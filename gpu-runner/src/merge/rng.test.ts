import { describe, expect, it } from 'vitest'
import { createRng } from './rng.ts'

describe('createRng', () => {
  it('is deterministic per (seed, keys) and differs when either changes', () => {
    const draw = (seed: number, ...keys: string[]) => {
      const r = createRng(seed, ...keys)
      return Array.from({ length: 8 }, () => r.uniform())
    }
    expect(draw(1, 'a', 'b')).toEqual(draw(1, 'a', 'b'))
    expect(draw(1, 'a', 'b')).not.toEqual(draw(2, 'a', 'b'))
    expect(draw(1, 'a', 'b')).not.toEqual(draw(1, 'a', 'c'))
    // Key boundaries are part of the hash: ('ab', 'c') is not ('a', 'bc').
    expect(draw(1, 'ab', 'c')).not.toEqual(draw(1, 'a', 'bc'))
  })

  it('gives uniforms in [0, 1) with the right mean and a flat histogram', () => {
    const r = createRng(42, 'uniform')
    const n = 100_000
    const bins = new Array(10).fill(0)
    let sum = 0
    for (let i = 0; i < n; i++) {
      const u = r.uniform()
      expect(u >= 0 && u < 1).toBe(true)
      sum += u
      bins[Math.floor(u * 10)]++
    }
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.005) // σ ≈ 0.0009
    // χ² with 9 degrees of freedom: 99.9th percentile ≈ 27.9
    const chi2 = bins.reduce((a, c) => a + (c - n / 10) ** 2 / (n / 10), 0)
    expect(chi2).toBeLessThan(27.9)
  })

  it('gives standard normals', () => {
    const r = createRng(7, 'normal')
    const n = 100_000
    let s = 0
    let s2 = 0
    for (let i = 0; i < n; i++) {
      const x = r.normal()
      s += x
      s2 += x * x
    }
    expect(Math.abs(s / n)).toBeLessThan(0.02)
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.02)
  })
})
