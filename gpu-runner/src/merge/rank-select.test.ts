import { describe, expect, it } from 'vitest'
import { keepRankRange, keyAtRank } from './rank-select.ts'
import { createRng } from './rng.ts'

/** ±0 are the same value to a merge; compare them as equal. */
const plain = (v: ArrayLike<number>) => Array.from(v, (x) => x + 0)

/** Reference: stable ascending sort of |x| by (value, index), keep positions lo..hi-1. */
function reference(values: Float32Array, lo: number, hi: number): Float32Array {
  const idx = Array.from(values, (_, i) => i)
  idx.sort((a, b) => Math.abs(values[a] as number) - Math.abs(values[b] as number) || a - b)
  const keep = new Set(idx.slice(Math.max(0, lo), Math.max(0, hi)))
  return values.map((v, i) => (keep.has(i) ? v : 0))
}

describe('keepRankRange', () => {
  it('matches a stable sort on data with many equal magnitudes, zeros and both signs', () => {
    const rng = createRng(1, 'rank-select')
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rng.uniform() * 60)
      // few distinct magnitudes so boundaries often fall inside a run of equal values
      const values = Float32Array.from({ length: n }, () => {
        const m = Math.floor(rng.uniform() * 5) * 0.25
        return rng.uniform() < 0.5 ? -m : m
      })
      const lo = Math.floor(rng.uniform() * (n + 1))
      const hi = lo + Math.floor(rng.uniform() * (n - lo + 1))
      const expected = reference(values, lo, hi)
      expect(
        plain(keepRankRange(Float32Array.from(values), lo, hi)),
        `n=${n} [${lo},${hi})`,
      ).toEqual(plain(expected))
    }
  })

  it('matches on wide-ranging magnitudes (all three radix digits matter)', () => {
    const rng = createRng(2, 'rank-select')
    const values = Float32Array.from(
      { length: 5000 },
      () => rng.normal() * 10 ** (rng.uniform() * 20 - 10),
    )
    for (const [lo, hi] of [
      [4000, 5000],
      [0, 1234],
      [17, 4983],
      [2500, 2501],
    ] as const)
      expect(plain(keepRankRange(Float32Array.from(values), lo, hi))).toEqual(
        plain(reference(values, lo, hi)),
      )
  })

  it('keeps everything for the full range and nothing for an empty one', () => {
    const v = Float32Array.of(3, -1, 2)
    expect(Array.from(keepRankRange(Float32Array.from(v), 0, 3))).toEqual([3, -1, 2])
    expect(Array.from(keepRankRange(Float32Array.from(v), 2, 2))).toEqual([0, 0, 0])
  })

  it('keyAtRank reports the key and how many are strictly smaller', () => {
    const v = Float32Array.of(5, 1, 5, 3, 5)
    const at = keyAtRank(v, 3) // ascending 1, 3, 5, 5, 5 → rank 3 is a 5 with 2 smaller
    expect(new Float32Array(Uint32Array.of(at.key).buffer)[0]).toBe(5)
    expect(at.less).toBe(2)
  })
})
