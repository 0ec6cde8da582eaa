import { describe, expect, it } from 'vitest'
import { allocateRanks } from './rank-budget.ts'

describe('allocateRanks (greedy marginal energy per byte)', () => {
  it('matches a hand-computed allocation on a tiny case', () => {
    // Gains per byte, column by column:
    //   A (10 B/rank): σ 4, 2, 1  → 1.6, 0.4, 0.1
    //   B (4 B/rank):  σ 3, 2, 1  → 2.25, 1.0, 0.25
    //   C (6 B/rank, weight 0.5): σ 6, 1 → 3.0, 0.083
    // Budget 30: C1 (3.0, 6 B) → B1 (2.25, 4) → A1 (1.6, 10) → B2 (1.0, 4) → A2 (0.4, 10 > 6 left: A is done)
    //   → B3 (0.25, 4) → C2 (0.083, 6 > 2 left) → 28 bytes.
    const out = allocateRanks(
      [
        { sigma: [4, 2, 1], bytesPerRank: 10 },
        { sigma: [3, 2, 1], bytesPerRank: 4 },
        { sigma: [6, 1], bytesPerRank: 6, weight: 0.5 },
      ],
      30,
    )
    expect(out).toEqual({ ranks: [1, 3, 1], bytes: 28 })
  })

  it('keeps everything when the budget allows, nothing when it is below one rank', () => {
    const c = [
      { sigma: [2, 1], bytesPerRank: 3 },
      { sigma: [5], bytesPerRank: 7 },
    ]
    expect(allocateRanks(c, 1000)).toEqual({ ranks: [2, 1], bytes: 13 })
    expect(allocateRanks(c, 2)).toEqual({ ranks: [0, 0], bytes: 0 })
  })

  it('never keeps zero singular values and never exceeds the budget', () => {
    const out = allocateRanks([{ sigma: [1, 0, 0], bytesPerRank: 1 }], 10)
    expect(out.ranks).toEqual([1])
    for (const budget of [0, 5, 17, 23, 41]) {
      const r = allocateRanks(
        [
          { sigma: [9, 5, 3, 1], bytesPerRank: 5 },
          { sigma: [4, 4, 2], bytesPerRank: 3 },
          { sigma: [7, 1], bytesPerRank: 11 },
        ],
        budget,
      )
      expect(r.bytes).toBeLessThanOrEqual(budget)
    }
  })

  it('rejects a non-positive cost per rank', () => {
    expect(() => allocateRanks([{ sigma: [1], bytesPerRank: 0 }], 10)).toThrow(/bytesPerRank/)
  })
})
