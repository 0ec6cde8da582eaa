/**
 * Consensus steps of the merge methods: TIES sign election with the disjoint mean's bookkeeping, and TALL-mask
 * consensus (which entries at least k experts find important).
 * @module
 */
import type { MajoritySignMethod } from '@twinserve/shared'

/** Entries per block of the expert-major loops (fits L1/L2 with a Float64Array accumulator). */
const BLOCK = 4096

/** Calls `fn(start, len)` for consecutive blocks of at most BLOCK entries covering [0, n). */
function forEachBlock(n: number, fn: (start: number, len: number) => void): void {
  for (let start = 0; start < n; start += BLOCK) fn(start, Math.min(BLOCK, n - start))
}

/**
 * TIES sign election and the agreeing-entries sums, block by block. For weighted deltas x_i = w_i·δ'_i
 * (weights applied here, on the fly) and m_i = [sign(x_i) = elected sign], calls
 * `emit(start, len, sum, divisor)` with sum = Σ_i m_i·x_i and divisor = Σ_i m_i·w_i for entries
 * start..start+len−1 (the arrays are reused between calls). The elected sign is that of Σ_i x_i (`total`,
 * mergekit `sum`) or of Σ_i sign(x_i) (`frequency`, mergekit `count`), +1 on a tie; zero entries never agree
 * with it, so they add nothing to either sum (the disjoint mean).
 * @see https://arxiv.org/abs/2306.01708
 */
export function signConsensusBlocks(
  deltas: readonly Float32Array[], // [T][n], unweighted δ'_i
  weights: readonly number[], // [T]
  method: MajoritySignMethod,
  emit: (start: number, len: number, sum: Float64Array, divisor: Float64Array) => void,
): void {
  // Blocks of entries with the experts in the outer loop, so each expert's array is read sequentially
  // (entry-major loops over T arrays made the whole TIES merge ~1.5× slower on a 768×3072 tensor), and the
  // accumulators stay in cache.
  const vote = new Float64Array(BLOCK)
  const sum = new Float64Array(BLOCK)
  const divisor = new Float64Array(BLOCK)
  forEachBlock(deltas[0]?.length ?? 0, (start, len) => {
    for (const acc of [vote, sum, divisor]) acc.fill(0)
    deltas.forEach((d, i) => {
      const w = weights[i] as number
      if (method === 'total')
        for (let j = 0; j < len; j++) vote[j] = (vote[j] as number) + w * (d[start + j] as number)
      else
        for (let j = 0; j < len; j++)
          vote[j] = (vote[j] as number) + Math.sign(w * (d[start + j] as number))
    })
    // Elected sign as ±1, then a branchless agreement test (signs are random: branches mispredict).
    for (let j = 0; j < len; j++) vote[j] = (vote[j] as number) >= 0 ? 1 : -1
    deltas.forEach((d, i) => {
      const w = weights[i] as number
      for (let j = 0; j < len; j++) {
        const v = w * (d[start + j] as number)
        const agree = v * (vote[j] as number) > 0 ? 1 : 0
        sum[j] = (sum[j] as number) + agree * v
        divisor[j] = (divisor[j] as number) + agree * w
      }
    })
    emit(start, len, sum, divisor)
  })
}

/** `signConsensusBlocks` gathered into whole arrays (for callers that want them; the engine streams). */
export function signConsensusSum(
  deltas: readonly Float32Array[], // [T][n]
  weights: readonly number[], // [T]
  method: MajoritySignMethod,
): { sum: Float64Array; divisor: Float64Array } {
  const n = deltas[0]?.length ?? 0
  const sum = new Float64Array(n)
  const divisor = new Float64Array(n)
  signConsensusBlocks(deltas, weights, method, (start, len, s, d) => {
    sum.set(s.subarray(0, len), start)
    divisor.set(d.subarray(0, len), start)
  })
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
  const out = new Float64Array(n)
  const mtl = new Float64Array(BLOCK)
  const votes = new Uint32Array(BLOCK)
  forEachBlock(n, (start, len) => {
    mtl.fill(0)
    votes.fill(0)
    for (const x of weighted)
      for (let j = 0; j < len; j++) mtl[j] = (mtl[j] as number) + (x[start + j] as number)
    for (const x of weighted)
      for (let j = 0; j < len; j++) {
        const v = x[start + j] as number
        if (Math.abs(v) > tallLambda * Math.abs((mtl[j] as number) - v))
          votes[j] = (votes[j] as number) + 1
      }
    for (let j = 0; j < len; j++)
      out[start + j] = (votes[j] as number) >= k ? (mtl[j] as number) : 0
  })
  return out
}
