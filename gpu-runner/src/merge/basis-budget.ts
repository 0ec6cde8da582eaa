/**
 * Basis ranks under one byte budget (recipe `exclusive: { shared_basis: { budget } }`, issue #18): which rank k
 * each matrix's shared basis keeps so that the stored bases and cores fit the budget and as much of the experts'
 * deltas as possible survives. A matrix's gain at rank k is what its basis keeps of every expert's delta,
 * Σ_t ‖C_t[:k, :k]‖² (shared-basis.ts `keptEnergy`), and its cost grows faster than linearly (the cores are
 * T·k²), so unlike per-expert ranks (rank-budget.ts) neither the gains per rank nor the bytes per rank are
 * constant. The greedy takes, again and again, the step of up to LOOKAHEAD ranks that keeps the most energy per
 * byte over all matrices (a look-ahead, since one more rank can add little while the next adds much: the leading
 * block of a core grows by a row and a column at once). Raw energy, not normalised per matrix or expert, as the
 * per-expert budget does: it minimises the total squared error of the deltas.
 * @module
 */

/** One matrix: what its basis keeps at each rank, and what it costs. */
export interface BasisCandidate {
  /** kept[k] for k = 0 … K: energy kept at rank k (kept[0] = 0, non-decreasing). */
  kept: ArrayLike<number>
  /** Stored bytes at rank k (bytes(0) = 0, increasing). */
  bytes: (k: number) => number
}

const LOOKAHEAD = 8

/**
 * @example allocateBasisRanks([{ kept: [0, 9, 10], bytes: (k) => 4 * k }], 4) // → { ranks: [1], bytes: 4 }
 */
export function allocateBasisRanks(
  candidates: readonly BasisCandidate[],
  budgetBytes: number,
): { ranks: number[]; bytes: number } {
  const ranks = candidates.map(() => 0)
  const done = candidates.map((c) => c.kept.length <= 1)
  let spent = 0
  for (;;) {
    let best: { m: number; to: number; score: number; cost: number } | undefined
    candidates.forEach((c, m) => {
      if (done[m]) return
      const r = ranks[m] as number
      const K = c.kept.length - 1
      const b0 = c.bytes(r)
      for (let to = r + 1; to <= Math.min(K, r + LOOKAHEAD); to++) {
        const cost = c.bytes(to) - b0
        if (spent + cost > budgetBytes) break
        const score = ((c.kept[to] as number) - (c.kept[r] as number)) / cost
        // Ties go to the lower matrix index and the shorter step: deterministic.
        if (!best || score > best.score) best = { m, to, score, cost }
      }
    })
    if (!best || !(best.score > 0)) break
    ranks[best.m] = best.to
    spent += best.cost
    if (best.to >= (candidates[best.m]?.kept.length ?? 1) - 1) done[best.m] = true
  }
  return { ranks, bytes: spent }
}
