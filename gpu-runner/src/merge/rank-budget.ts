/**
 * Rank allocation under one byte budget (issue #18): which rank each (matrix, expert) pair keeps so that the
 * stored factors fit the budget and as much of the experts' exclusive knowledge as possible survives.
 *
 * Truncating expert t's delta of one matrix to rank k loses Σ_{j>k} σ_j² of its ‖ΔW‖²_F (Eckart–Young), and each
 * kept rank costs the same bytes for that matrix (a column of U, a row of Vᵀ, σ and its expert index). So the
 * problem is a knapsack whose items are single rank columns, each worth gain σ_j² (scaled per pair, below) at a
 * fixed cost per pair. Because σ is sorted descending, a pair's marginal gain never grows with its rank: taking
 * columns greedily by gain per byte, best first, is the fractional knapsack's optimum, and it is exact
 * up to the last column that does not fit (TSV-C and the "rank allocation by spectrum energy" literature use
 * the same greedy). A column that does not fit ends its pair (every further column costs as much and is worth
 * less), but cheaper pairs may still fill the remaining bytes.
 * @module
 */

/** One matrix of one expert: its singular values (descending) and what each kept rank costs. */
export interface RankCandidate {
  /** Singular values, descending; the allocation never keeps more than `sigma.length` ranks. */
  sigma: ArrayLike<number>
  /** Bytes one kept rank costs (> 0). */
  bytesPerRank: number
  /** Multiplies every σ² of this pair (e.g. 1 / the expert's total energy). Default 1. */
  weight?: number
}

export interface RankAllocation {
  /** Rank kept per candidate, in input order. */
  ranks: number[]
  /** Bytes the kept ranks cost. */
  bytes: number
}

/** A binary max-heap of (score, candidate) pairs. */
class MaxHeap {
  private readonly score: number[] = []
  private readonly item: number[] = []

  get size(): number {
    return this.score.length
  }

  push(score: number, item: number): void {
    this.score.push(score)
    this.item.push(item)
    let i = this.score.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.above(i, p)) break
      this.swap(i, p)
      i = p
    }
  }

  pop(): number {
    const top = this.item[0] as number
    const last = this.score.length - 1
    this.swap(0, last)
    this.score.pop()
    this.item.pop()
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < this.score.length && this.above(l, m)) m = l
      if (r < this.score.length && this.above(r, m)) m = r
      if (m === i) return top
      this.swap(i, m)
      i = m
    }
  }

  /** Higher score first; ties go to the lower candidate index, so allocations are deterministic. */
  private above(a: number, b: number): boolean {
    const sa = this.score[a] as number
    const sb = this.score[b] as number
    return sa > sb || (sa === sb && (this.item[a] as number) < (this.item[b] as number))
  }

  private swap(a: number, b: number): void {
    ;[this.score[a], this.score[b]] = [this.score[b] as number, this.score[a] as number]
    ;[this.item[a], this.item[b]] = [this.item[b] as number, this.item[a] as number]
  }
}

/**
 * Greedy rank allocation by marginal energy per byte under `budgetBytes`.
 * @example allocateRanks([{ sigma: [3, 1], bytesPerRank: 10 }, { sigma: [2], bytesPerRank: 2 }], 12)
 *   // → { ranks: [1, 1], bytes: 12 }: 2²/2 = 2 per byte first, then 3²/10 = 0.9; 1²/10 no longer fits
 */
export function allocateRanks(
  candidates: readonly RankCandidate[],
  budgetBytes: number,
): RankAllocation {
  const ranks = candidates.map(() => 0)
  const heap = new MaxHeap()
  const gain = (c: RankCandidate, k: number) => (c.weight ?? 1) * (c.sigma[k] as number) ** 2
  candidates.forEach((c, i) => {
    if (!(c.bytesPerRank > 0)) throw new RangeError(`candidate ${i}: bytesPerRank must be > 0`)
    if (c.sigma.length > 0 && (c.sigma[0] as number) > 0) heap.push(gain(c, 0) / c.bytesPerRank, i)
  })
  let left = budgetBytes
  let bytes = 0
  while (heap.size > 0) {
    const i = heap.pop()
    const c = candidates[i] as RankCandidate
    if (c.bytesPerRank > left) continue
    left -= c.bytesPerRank
    bytes += c.bytesPerRank
    const k = (ranks[i] as number) + 1
    ranks[i] = k
    // Zero singular values add nothing: the pair is done.
    if (k < c.sigma.length && (c.sigma[k] as number) > 0) heap.push(gain(c, k) / c.bytesPerRank, i)
  }
  return { ranks, bytes }
}
