/**
 * Hand-made tensors for the golden-vector tests. Magnitudes are distinct within each expert (no ties at a
 * trim boundary) and every value is exact in float32, so expected numbers can be worked out on paper from
 * the published formulas; each test writes its numbers out with the working.
 */
import type { MergeMethodName, MergeSpecInput } from '@twinserve/shared'
import { getStrategy, type TensorMergeInput } from '../src/merge/index.ts'
import { fixedUniforms, makeContext, specOf } from './merge-conformance.ts'

export const BASE = [0.5, -1, 2, 0, 1, -2]
export const DELTA_A = [1.0, -0.5, 0.25, 0.125, 2.0, -1.5]
export const DELTA_B = [0.375, 0.5, -0.75, 1.0, -1.5, -0.25]
export const DELTA_C = [-0.25, 1.0, 0.5, -2.0, 0.75, -0.125]

const plus = (d: readonly number[]) => Float32Array.from(BASE, (b, j) => b + (d[j] as number))

/** Experts a, b, c = BASE + DELTA_x, as one tensor of the given shape (6 values). */
export function goldenInput(
  which: readonly ('a' | 'b' | 'c')[] = ['a', 'b', 'c'],
  shape: readonly number[] = [6],
): TensorMergeInput {
  const deltas = { a: DELTA_A, b: DELTA_B, c: DELTA_C }
  return {
    base: Float32Array.from(BASE),
    experts: which.map((w) => plus(deltas[w])),
    names: [...which],
    shape,
    tensorName: 'golden',
  }
}

/** Shape [2, 3]: ranks are taken within each row; density 0.5, epsilon 0.2 → p = 0.3, 0.5, 0.7 by rank. */
export const DELLA_GOLDEN = {
  //   a rows |1, 0.5, 0.25| |0.125, 2, 1.5| → p = [0.7, 0.5, 0.3, 0.3, 0.7, 0.5]
  //   u = [0.65, 0.55, 0.25, 0.35, 0.69, 0.45] → keep 0, 2, 4, 5: [1, 0, 0.25, 0, 2, -1.5]
  //   L1 rescale 5.375 / 4.75 = 43/38
  uniformsA: [0.65, 0.55, 0.25, 0.35, 0.69, 0.45],
  //   b rows |0.375, 0.5, 0.75| |1, 1.5, 0.25| → p = [0.3, 0.5, 0.7, 0.5, 0.7, 0.3]
  //   u = [0.31, 0.45, 0.71, 0.2, 0.5, 0.29] → keep 1, 3, 4, 5: [0, 0.5, 0, 1, -1.5, -0.25]
  //   L1 rescale 4.375 / 3.25 = 35/26
  uniformsB: [0.31, 0.45, 0.71, 0.2, 0.5, 0.29],
  a: [43 / 38, 0, 43 / 152, 0, 86 / 38, -64.5 / 38],
  b: [0, 17.5 / 26, 0, 35 / 26, -52.5 / 26, -8.75 / 26],
}

/** dare_linear/dare_ties golden: fixed uniforms for experts a and b; an entry survives when u < density = 0.5. */
export const DARE_GOLDEN = {
  //   a: keep 0, 2, 4: [1, 0, 0.25, 0, 2, 0]; L1 rescale ‖δ_a‖₁ / ‖kept‖₁ = 5.375 / 3.25 = 43/26
  uniformsA: [0.1, 0.7, 0.3, 0.9, 0.2, 0.6],
  //   b: keep 1, 3, 4: [0, 0.5, 0, 1, -1.5, 0]; L1 rescale 4.375 / 3 = 35/24
  uniformsB: [0.6, 0.2, 0.8, 0.4, 0.1, 0.95],
}

/**
 * Runs `spec`'s strategy on experts a and b of the golden tensor, their random streams replaying `golden`'s
 * fixed uniforms (the DARE/DELLA golden tests).
 */
export function mergeGoldenPair<K extends MergeMethodName>(
  spec: Extract<MergeSpecInput, { method: K }>,
  golden: { uniformsA: readonly number[]; uniformsB: readonly number[] },
  shape?: readonly number[],
): Float32Array {
  return getStrategy<K>(spec.method).merge(
    specOf(spec),
    makeContext(goldenInput(['a', 'b'], shape), [
      fixedUniforms(golden.uniformsA),
      fixedUniforms(golden.uniformsB),
    ]),
  )
}
