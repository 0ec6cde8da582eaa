import { describe, it } from 'vitest'
import { expectAppError, expectClose } from '../../test-support/merge-conformance.ts'
import { FISHER_FLOOR, fisherMerge } from './fisher.ts'

const f32 = (xs: readonly number[]) => Float32Array.from(xs)

describe('fisherMerge: θ* = Σ F_i·θ_i / Σ F_i (Matena & Raffel 2022)', () => {
  it('hand-computed: F_a = [1, 0, 3], F_b = [1, 2, 1], θ_a = [1, 1, 1], θ_b = [3, 5, 7]', () => {
    // [ (1 + 3) / 2, (1e-6·1 + 2·5) / (1e-6 + 2), (3·1 + 1·7) / 4 ]: the zero is floored at 1e-6.
    const out = fisherMerge([f32([1, 1, 1]), f32([3, 5, 7])], [f32([1, 0, 3]), f32([1, 2, 1])])
    expectClose(out, [2, (FISHER_FLOOR + 10) / (FISHER_FLOOR + 2), 2.5])
  })

  it('weights scale the Fisher: w = [3, 1] on equal Fishers is the 3:1 average', () => {
    const out = fisherMerge([f32([1, 2]), f32([5, 6])], [f32([2, 2]), f32([2, 2])], [3, 1])
    expectClose(out, [2, 3])
  })

  it('equal Fishers give the average, one expert gives itself, all-zero Fishers the average', () => {
    const a = f32([0.5, -1, 2])
    const b = f32([1.5, 3, -2])
    expectClose(fisherMerge([a, b], [f32([4, 1, 9]), f32([4, 1, 9])]), [1, 1, 0])
    expectClose(fisherMerge([a], [f32([0, 2, 5])]), a)
    expectClose(fisherMerge([a, b], [f32([0, 0, 0]), f32([0, 0, 0])]), [1, 1, 0])
  })

  it('refuses mismatched lengths, negative Fisher values and non-positive weights', () => {
    expectAppError(() => fisherMerge([f32([1, 2])], [f32([1])]), 'INCOMPATIBLE_EXPERTS', /expert 0/)
    expectAppError(() => fisherMerge([f32([1])], [f32([-1])]), 'INVALID_REQUEST', /Fisher value 0/)
    expectAppError(() => fisherMerge([f32([1])], [f32([1])], [0]), 'INVALID_REQUEST', /weight 0/)
  })
})
