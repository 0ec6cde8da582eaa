import { parseMergeSpec } from '@twinserve/shared'
import { describe, it } from 'vitest'
import {
  expectAppError,
  expectClose,
  runStrategyConformance,
} from '../../../test-support/merge-conformance.ts'
import { goldenInput } from '../../../test-support/merge-golden.ts'
import { mergeTensor } from '../merge-tensor.ts'

runStrategyConformance({
  method: 'task_arithmetic',
  typical: { method: 'task_arithmetic', lambda: 0.3 },
  identity: { method: 'task_arithmetic' },
})

describe('task_arithmetic: golden vectors', () => {
  const experts = { a: { weight: 1 }, b: { weight: 2 }, c: { weight: 1 } }

  it('θ₀ + λ·Σ w_i·δ_i (λ = 0.5, w = 1, 2, 1)', () => {
    // Σ w·δ = [1.5, 1.5, -0.75, 0.125, -0.25, -2.125]; ×0.5 + base
    const spec = parseMergeSpec({ method: 'task_arithmetic', lambda: 0.5, experts })
    expectClose(mergeTensor(spec, goldenInput()), [1.25, -0.25, 1.625, 0.0625, 0.875, -3.0625])
  })

  it('normalize divides by Σ w = 4', () => {
    // [1.5, 1.5, -0.75, 0.125, -0.25, -2.125] / 4 + base
    const spec = parseMergeSpec({ method: 'task_arithmetic', normalize: true, experts })
    expectClose(
      mergeTensor(spec, goldenInput()),
      [0.875, -0.625, 1.8125, 0.03125, 0.9375, -2.53125],
    )
  })

  it('a result that overflows float32 is MERGE_FAILED, not Infinity', () => {
    // λ is capped at 100 by the spec, so the overflow comes from the tensors: deltas of 3e38 (finite in
    // float32, max ≈ 3.4e38) times λ = 2 leave float32's range.
    const spec = parseMergeSpec({ method: 'task_arithmetic', lambda: 2 })
    const input = goldenInput()
    const huge = { ...input, experts: input.experts.map((e) => e.map((v) => v + 3e38)) }
    expectAppError(() => mergeTensor(spec, huge), 'MERGE_FAILED', /golden/)
  })
})
