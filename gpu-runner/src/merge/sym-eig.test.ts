import { describe, expect, it } from 'vitest'
import { createRng } from './rng.ts'
import { symEig } from './sym-eig.ts'

function randomSymmetric(n: number, seed: number): Float64Array {
  const r = createRng(seed, 'sym')
  const a = new Float64Array(n * n)
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      const v = r.normal()
      a[i * n + j] = v
      a[j * n + i] = v
    }
  return a
}

function check(a: Float64Array, n: number): void {
  const { values, vectors } = symEig(a, n)
  for (let j = 1; j < n; j++)
    expect(values[j] as number).toBeGreaterThanOrEqual(values[j - 1] as number)
  const scale = Math.max(1, ...Array.from(values, Math.abs))
  for (let j = 0; j < n; j++) {
    // A·v_j = λ_j·v_j
    for (let i = 0; i < n; i++) {
      let av = 0
      for (let k = 0; k < n; k++) av += (a[i * n + k] as number) * (vectors[k * n + j] as number)
      expect(Math.abs(av - (values[j] as number) * (vectors[i * n + j] as number))).toBeLessThan(
        1e-12 * scale,
      )
    }
    // VᵀV = I
    for (let k = 0; k < n; k++) {
      let dot = 0
      for (let i = 0; i < n; i++)
        dot += (vectors[i * n + j] as number) * (vectors[i * n + k] as number)
      expect(Math.abs(dot - (j === k ? 1 : 0))).toBeLessThan(1e-12)
    }
  }
}

describe('symEig', () => {
  it.each([1, 2, 3, 8, 42])('decomposes a random symmetric %i×%i matrix', (n) => {
    check(randomSymmetric(n, n), n)
  })

  it('handles repeated eigenvalues, zeros and a diagonal', () => {
    check(new Float64Array(16), 4)
    check(Float64Array.of(2, 0, 0, 0, 2, 0, 0, 0, -1), 3)
    expect(Array.from(symEig(Float64Array.of(3, 0, 0, 1), 2).values)).toEqual([1, 3])
  })

  it('gives the known spectrum of [[2, 1], [1, 2]]', () => {
    const { values } = symEig(Float64Array.of(2, 1, 1, 2), 2)
    expect(values[0]).toBeCloseTo(1, 14)
    expect(values[1]).toBeCloseTo(3, 14)
  })

  it('does not modify its input', () => {
    const a = randomSymmetric(5, 9)
    const copy = Float64Array.from(a)
    symEig(a, 5)
    expect(a).toEqual(copy)
  })
})
