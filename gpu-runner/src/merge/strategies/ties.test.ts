import { parseMergeSpec } from '@twinserve/shared'
import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { goldenInput } from '../../../test-support/merge-golden.ts'
import { mergeTensor } from '../merge-tensor.ts'

runStrategyConformance({
  method: 'ties',
  typical: { method: 'ties', density: 0.4, lambda: 0.7 },
  identity: { method: 'ties' },
  densityOne: [
    // Untrimmed TIES is sign election + (disjoint mean | agreeing sum): the other sign-consensus methods at
    // density 1 compute exactly that.
    {
      spec: { method: 'ties', density: 1, normalize: false },
      equals: { method: 'breadcrumbs_ties' },
    },
    { spec: { method: 'ties', density: 1 }, equals: { method: 'della', density: 1 } },
  ],
})

describe('ties: golden vectors', () => {
  // Trim to the 3 largest |δ| of 6 (density 0.5):
  //   a' = [1, 0, 0, 0, 2, -1.5]   b' = [0, 0, -0.75, 1, -1.5, 0]   c' = [0, 1, 0, -2, 0.75, 0]
  // Elected sign (total): Σ = [1, 1, -0.75, -1, 1.25, -1.5] → [+, +, -, -, +, -]
  // Disjoint mean of agreeing entries: [1, 1, -0.75, -2, (2 + 0.75)/2, -1.5]
  it('trim, elect (total), disjoint mean', () => {
    const spec = parseMergeSpec({ method: 'ties', density: 0.5 })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, 0, 1.25, -2, 2.375, -3.5])
  })

  it('frequency election differs where one large value outvotes', () => {
    // Value 3: signs of (b' = 1, c' = -2) count 0 → tie goes to + → mean of b' alone = 1.
    const spec = parseMergeSpec({ method: 'ties', density: 0.5, majority_sign_method: 'frequency' })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, 0, 1.25, 1, 2.375, -3.5])
  })

  it('weights enter the vote and the divisor; λ scales the mean', () => {
    // w = (2, 1, 1): x_a = [2, 0, 0, 0, 4, -3]; value 4 agrees for a and c: (4 + 0.75) / (2 + 1) = 1.58333…
    // value 5: -3 / 2 = -1.5; then × λ = 0.5 + base.
    const spec = parseMergeSpec({
      method: 'ties',
      density: 0.5,
      lambda: 0.5,
      experts: { a: { weight: 2 } },
    })
    expectClose(mergeTensor(spec, goldenInput()), [1, -0.5, 1.625, -1, 1 + 4.75 / 6, -2.75])
  })

  it('normalize=false sums the agreeing entries', () => {
    const spec = parseMergeSpec({ method: 'ties', density: 0.5, normalize: false })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, 0, 1.25, -2, 3.75, -3.5])
  })

  it('per-expert density overrides the global one', () => {
    // c keeps everything: c = [-0.25, 1, 0.5, -2, 0.75, -0.125]; a' and b' as above.
    // Σ = [0.75, 1, -0.25, -1, 1.25, -1.625] → signs [+, +, -, -, +, -]
    // means: [1/1, 1/1, -0.75/1, -2/1, (2 + 0.75)/2, (-1.5 - 0.125)/2]
    const spec = parseMergeSpec({ method: 'ties', density: 0.5, experts: { c: { density: 1 } } })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, 0, 1.25, -2, 2.375, -2.8125])
  })
})
