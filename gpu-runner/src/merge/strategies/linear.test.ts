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
  method: 'linear',
  typical: { method: 'linear' },
  identity: { method: 'linear' },
})

describe('linear: golden vectors', () => {
  // θ_a = [1.5, -1.5, 2.25, 0.125, 3, -3.5], θ_b = [0.875, -0.5, 1.25, 1, -0.5, -2.25]; weights a=1, b=3.
  const spec = (normalize: boolean) =>
    parseMergeSpec({ method: 'linear', normalize, experts: { a: { weight: 1 }, b: { weight: 3 } } })

  it('weighted average (θ_a + 3·θ_b) / 4', () => {
    // e.g. value 0: (1.5 + 3·0.875) / 4 = 4.125 / 4 = 1.03125
    expectClose(
      mergeTensor(spec(true), goldenInput(['a', 'b'])),
      [1.03125, -0.75, 1.5, 0.78125, 0.375, -2.5625],
    )
  })

  it('normalize=false is the plain weighted sum', () => {
    expectClose(
      mergeTensor(spec(false), goldenInput(['a', 'b'])),
      [4.125, -3, 6, 3.125, 1.5, -10.25],
    )
  })

  it('weights summing to 0 cannot be normalized: INVALID_REQUEST, not Infinity', () => {
    const bad = parseMergeSpec({
      method: 'linear',
      experts: { a: { weight: 1 }, b: { weight: -1 } },
    })
    expectAppError(() => mergeTensor(bad, goldenInput(['a', 'b'])), 'INVALID_REQUEST', /sum to 0/)
  })
})
