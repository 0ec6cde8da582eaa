/**
 * Fisher merging (Matena & Raffel, "Merging Models with Fisher-Weighted Averaging", NeurIPS 2022): each parameter
 * is the average of the experts' values weighted by their diagonal Fisher information,
 * θ*_j = Σ_i w_i·F̂_ij·θ_ij / Σ_i w_i·F̂_ij, with F̂ = max(F, floor) so that a parameter no expert is sensitive to
 * (every F_ij = 0) falls back to the weighted average instead of 0/0 (the paper's code floors at 1e-6).
 *
 * Not a registry strategy: its inputs are per-parameter Fisher diagonals, which need per-example gradients, and
 * `twinserve build` does not compute gradients of arbitrary graphs. The benchmark computes them for the Fashion
 * zoo's MLP with the trainer's gradient graph (bench/quality/fisher-mlp.ts) and merges with this function.
 * @see https://arxiv.org/abs/2111.09832
 * @module
 */
import { AppError } from '@twinserve/shared'

/** The paper's floor on the Fisher diagonal. */
export const FISHER_FLOOR = 1e-6

/**
 * One tensor's Fisher-weighted average.
 * @param experts θ_i, one per expert, all of one length
 * @param fisher F_i, the diagonal Fisher of each expert's θ_i (same lengths, ≥ 0)
 * @param weights w_i (default 1 each), positive
 * @throws AppError INCOMPATIBLE_EXPERTS on mismatched lengths, INVALID_REQUEST on negative Fisher or weights
 */
export function fisherMerge(
  experts: readonly Float32Array[],
  fisher: readonly Float32Array[],
  weights: readonly number[] = experts.map(() => 1),
  floor = FISHER_FLOOR,
): Float32Array {
  const n = experts[0]?.length ?? 0
  if (experts.length === 0 || fisher.length !== experts.length || weights.length !== experts.length)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `fisher merge: ${experts.length} experts, ${fisher.length} Fisher diagonals, ${weights.length} weights`,
    )
  experts.forEach((e, i) => {
    if (e.length !== n || fisher[i]?.length !== n)
      throw new AppError(
        'INCOMPATIBLE_EXPERTS',
        `fisher merge: expert ${i} has ${e.length} values and ${fisher[i]?.length} Fisher values, expected ${n}`,
      )
    if (!((weights[i] as number) > 0))
      throw new AppError('INVALID_REQUEST', `fisher merge: weight ${i} must be positive`)
  })
  const out = new Float32Array(n)
  for (let j = 0; j < n; j++) {
    let num = 0
    let den = 0
    for (let i = 0; i < experts.length; i++) {
      const f = (fisher[i] as Float32Array)[j] as number
      if (f < 0)
        throw new AppError('INVALID_REQUEST', `fisher merge: expert ${i} Fisher value ${j} is ${f}`)
      const wf = (weights[i] as number) * Math.max(f, floor)
      num += wf * ((experts[i] as Float32Array)[j] as number)
      den += wf
    }
    out[j] = num / den
  }
  return out
}
