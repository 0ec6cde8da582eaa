import { parseMergeSpec } from '@twinserve/shared'
import { describe, it } from 'vitest'
import {
  expectAppError,
  expectClose,
  runStrategyConformance,
} from '../../../test-support/merge-conformance.ts'
import { mergeTensor } from '../merge-tensor.ts'
import type { TensorMergeInput } from '../types.ts'

runStrategyConformance({
  method: 'model_stock',
  typical: { method: 'model_stock' },
  identity: { skip: 'model_stock needs at least two experts (N = 1 is an INVALID_REQUEST)' },
  minExperts: 2,
})

function input(base: number[], deltas: number[][], shape = [base.length]): TensorMergeInput {
  return {
    base: Float32Array.from(base),
    experts: deltas.map((d) => Float32Array.from(base, (b, j) => b + (d[j] as number))),
    names: deltas.map((_, i) => `e${i}`),
    shape,
    tensorName: 'stock',
  }
}

describe('model_stock: golden vectors', () => {
  const spec = parseMergeSpec({ method: 'model_stock' })

  it('two experts: t = 2cos / (1 + cos)', () => {
    // δ = (3, 4), (4, 3): cos = 24/25; t = (48/25) / (49/25) = 48/49; θ = θ₀ + t·mean(δ) = 1 + 48/49·3.5
    expectClose(
      mergeTensor(
        spec,
        input(
          [1, 1],
          [
            [3, 4],
            [4, 3],
          ],
        ),
      ),
      [1 + 24 / 7, 1 + 24 / 7],
    )
  })

  it('three experts: mean pairwise cosine', () => {
    // δ = (1, 0), (0, 1), (1, 1): cosines 0, 1/√2, 1/√2 → cos = √2/3; t = 3cos / (1 + 2cos)
    const cos = Math.SQRT2 / 3
    const t = (3 * cos) / (1 + 2 * cos) // ≈ 0.7279221
    expectClose(
      mergeTensor(
        spec,
        input(
          [1, -1],
          [
            [1, 0],
            [0, 1],
            [1, 1],
          ],
        ),
      ),
      [1 + (t * 2) / 3, -1 + (t * 2) / 3],
    )
  })

  it('filter_wise takes one ratio per row', () => {
    // rows of shape [2, 2]: row 0 δ = (3, 4), (4, 3) → t = 48/49; row 1 δ = (1, 0), (0, 2) → cos 0 → t = 0.
    const deltas = [
      [3, 4, 1, 0],
      [4, 3, 0, 2],
    ]
    const rows = parseMergeSpec({ method: 'model_stock', filter_wise: true })
    expectClose(mergeTensor(rows, input([0, 0, 0, 0], deltas, [2, 2])), [24 / 7, 24 / 7, 0, 0])
    // Whole tensor: cos = 24 / √(26·29), t = 2cos / (1 + cos), θ = t·mean(δ) = t·(3.5, 3.5, 0.5, 1)
    const cos = 24 / Math.sqrt(26 * 29)
    const t = (2 * cos) / (1 + cos)
    expectClose(mergeTensor(spec, input([0, 0, 0, 0], deltas, [2, 2])), [
      3.5 * t,
      3.5 * t,
      0.5 * t,
      t,
    ])
  })

  it('opposite task vectors make t undefined: MERGE_FAILED with the tensor name', () => {
    expectAppError(
      () =>
        mergeTensor(
          spec,
          input(
            [0, 0],
            [
              [1, 2],
              [-1, -2],
            ],
          ),
        ),
      'MERGE_FAILED',
      /stock/,
    )
  })
})
