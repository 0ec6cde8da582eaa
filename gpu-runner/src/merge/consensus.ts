/**
 * Consensus steps of the merge methods: TIES sign election with the disjoint mean's bookkeeping, and TALL-mask
 * consensus (which entries at least k experts find important).
 * @module
 */
import type { MajoritySignMethod } from '@twinserve/shared'

/**
 * Σ_i m_i·x_i and Σ_i m_i·w_i for each entry, where x_i = w_i·δ'_i are the weighted deltas and
 * m_i = [sign(x_i) = elected sign]. The elected sign is that of Σ_i x_i (`total`, mergekit `sum`) or of
 * Σ_i sign(x_i) (`frequency`, mergekit `count`), +1 on a tie; zero entries never agree with it, so they add
 * nothing to either sum (the disjoint mean).
 * @see https://arxiv.org/abs/2306.01708
 */
export function signConsensusSum(
  weighted: readonly Float32Array[], // [T][n]
  weights: readonly number[], // [T]
  method: MajoritySignMethod,
): { sum: Float64Array; divisor: Float64Array } {
  const n = weighted[0]?.length ?? 0
  const sum = new Float64Array(n)
  const divisor = new Float64Array(n)
  const T = weighted.length
  for (let j = 0; j < n; j++) {
    let vote = 0
    if (method === 'total')
      for (let i = 0; i < T; i++) vote += (weighted[i] as Float32Array)[j] as number
    else for (let i = 0; i < T; i++) vote += Math.sign((weighted[i] as Float32Array)[j] as number)
    const up = vote >= 0
    let s = 0
    let d = 0
    for (let i = 0; i < T; i++) {
      const x = (weighted[i] as Float32Array)[j] as number
      if (up ? x > 0 : x < 0) {
        s += x
        d += weights[i] as number
      }
    }
    sum[j] = s
    divisor[j] = d
  }
  return { sum, divisor }
}

/**
 * TALL-mask consensus over weighted task vectors x_i: expert i claims entry j when
 * |x_i[j]| > λ·|τ_MTL[j] − x_i[j]|, τ_MTL = Σ_i x_i; returns τ_MTL where at least k experts claim the entry,
 * 0 elsewhere. The strict `>` follows the reference code (a zero task vector claims nothing).
 * @see https://arxiv.org/abs/2405.07813
 */
export function tallConsensus(
  weighted: readonly Float32Array[], // [T][n]
  tallLambda: number,
  k: number,
): Float64Array {
  const n = weighted[0]?.length ?? 0
  const T = weighted.length
  const out = new Float64Array(n)
  for (let j = 0; j < n; j++) {
    let mtl = 0
    for (let i = 0; i < T; i++) mtl += (weighted[i] as Float32Array)[j] as number
    let votes = 0
    for (let i = 0; i < T; i++) {
      const x = (weighted[i] as Float32Array)[j] as number
      if (Math.abs(x) > tallLambda * Math.abs(mtl - x)) votes++
    }
    out[j] = votes >= k ? mtl : 0
  }
  return out
}
