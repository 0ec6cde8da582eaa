import { parseMergeSpec } from '@twinserve/shared'
import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { goldenInput } from '../../../test-support/merge-golden.ts'
import { mergeTensor } from '../merge-tensor.ts'

runStrategyConformance({
  method: 'breadcrumbs_ties',
  typical: { method: 'breadcrumbs_ties', density: 0.6, gamma: 0.1, normalize: true },
  identity: { method: 'breadcrumbs_ties' },
  densityOne: [
    {
      spec: { method: 'breadcrumbs_ties', density: 1, gamma: 0.2, normalize: true },
      equals: { method: 'ties', density: 1 },
    },
  ],
})

describe('breadcrumbs_ties: golden vectors', () => {
  // Same sparsification as breadcrumbs' golden:
  //   a' = [1, -0.5, 0, 0, 0, -1.5]  b' = [0, 0.5, -0.75, 1, 0, 0]  c' = [0, 1, 0.5, 0, 0.75, 0]
  // Σ = [1, 1, -0.25, 1, 0.75, -1.5] → signs [+, +, -, +, +, -]
  // agreeing sum (normalize=false): [1, 0.5 + 1, -0.75, 1, 0.75, -1.5]
  it('breadcrumbs, elect, sum the agreeing entries', () => {
    const spec = parseMergeSpec({ method: 'breadcrumbs_ties', density: 0.5, gamma: 0.2 })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, 0.5, 1.25, 1, 1.75, -3.5])
  })

  it('normalize=true takes the disjoint mean', () => {
    // value 1: (0.5 + 1) / 2 = 0.75; the rest have one agreeing expert.
    const spec = parseMergeSpec({
      method: 'breadcrumbs_ties',
      density: 0.5,
      gamma: 0.2,
      normalize: true,
    })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, -0.25, 1.25, 1, 1.75, -3.5])
  })
})
