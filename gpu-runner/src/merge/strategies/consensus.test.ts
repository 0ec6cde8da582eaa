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
  method: 'consensus',
  typical: { method: 'consensus', k: 2, lambda: 0.5 },
  // k = 1 keeps every entry a single expert claims; a lone nonzero δ always claims (|δ| > 0.6·0).
  identity: { method: 'consensus', k: 1 },
  densityOne: [
    // With λ_t = 0 every nonzero entry is claimed by every expert with a nonzero value there; k = 1 then
    // keeps all of τ_MTL: plain task arithmetic.
    {
      spec: { method: 'consensus', k: 1, tall_mask_lambda: 0, lambda: 0.4 },
      equals: { method: 'task_arithmetic', lambda: 0.4 },
    },
  ],
})

describe('consensus (TALL masks): golden vectors', () => {
  // τ_MTL = δ_a + δ_b + δ_c = [1.125, 1, 0, -0.875, 1.25, -1.875]
  // claims |δ_t| > 0.6·|τ_MTL − δ_t|:
  //   0: a 1 > 0.075 ✓, b 0.375 > 0.45 ✗, c 0.25 > 0.825 ✗        → 1 vote
  //   1: a 0.5 > 0.9 ✗, b 0.5 > 0.3 ✓, c 1 > 0 ✓                  → 2
  //   2: a 0.25 > 0.15 ✓, b 0.75 > 0.45 ✓, c 0.5 > 0.3 ✓          → 3 (τ_MTL = 0 there)
  //   3: a 0.125 > 0.6 ✗, b 1 > 1.125 ✗, c 2 > 0.675 ✓            → 1
  //   4: a 2 > 0.45 ✓, b 1.5 > 1.65 ✗, c 0.75 > 0.3 ✓             → 2
  //   5: a 1.5 > 0.225 ✓, b 0.25 > 0.975 ✗, c 0.125 > 1.05 ✗      → 1
  it('k = 2 keeps entries claimed by at least two experts', () => {
    const spec = parseMergeSpec({ method: 'consensus' })
    expectClose(mergeTensor(spec, goldenInput()), [0.5, 0, 2, 0, 2.25, -2])
  })

  it('k = 1 keeps every claimed entry', () => {
    const spec = parseMergeSpec({ method: 'consensus', k: 1 })
    expectClose(mergeTensor(spec, goldenInput()), [1.625, 0, 2, -0.875, 2.25, -3.875])
  })

  it('k = 3 keeps only the unanimous entry (τ_MTL = 0 there): the base', () => {
    const spec = parseMergeSpec({ method: 'consensus', k: 3, lambda: 0.3 })
    expectClose(mergeTensor(spec, goldenInput()), [0.5, -1, 2, 0, 1, -2])
  })

  it('lambda scales the kept multi-task vector', () => {
    const spec = parseMergeSpec({ method: 'consensus', lambda: 0.5 })
    expectClose(mergeTensor(spec, goldenInput()), [0.5, -0.5, 2, 0, 1.625, -2])
  })

  it('k larger than the number of experts is INVALID_REQUEST', () => {
    const spec = parseMergeSpec({ method: 'consensus', k: 4 })
    expectAppError(() => mergeTensor(spec, goldenInput()), 'INVALID_REQUEST', /k=4/)
  })
})
