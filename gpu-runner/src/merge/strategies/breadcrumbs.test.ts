import { parseMergeSpec } from '@twinserve/shared'
import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { goldenInput } from '../../../test-support/merge-golden.ts'
import { mergeTensor } from '../merge-tensor.ts'

runStrategyConformance({
  method: 'breadcrumbs',
  typical: { method: 'breadcrumbs', density: 0.6, gamma: 0.1, lambda: 0.5 },
  identity: { method: 'breadcrumbs' },
  densityOne: [
    {
      spec: { method: 'breadcrumbs', density: 1, gamma: 0.2 },
      equals: { method: 'task_arithmetic' },
    },
  ],
})

describe('breadcrumbs: golden vectors', () => {
  // n = 6, density 0.5, gamma 0.2: keep ⌊0.5·6⌋ = 3, drop the ⌊0.2·6⌋ = 1 largest and 6 - 3 - 1 = 2 smallest,
  // i.e. ascending |δ| ranks 2..4:
  //   a: ascending 0.125, 0.25, 0.5, 1, 1.5, 2 → keep -0.5, 1, -1.5 → [1, -0.5, 0, 0, 0, -1.5]
  //   b: ascending 0.25, 0.375, 0.5, 0.75, 1, 1.5 → keep 0.5, -0.75, 1 → [0, 0.5, -0.75, 1, 0, 0]
  //   c: ascending 0.125, 0.25, 0.5, 0.75, 1, 2 → keep 0.5, 0.75, 1 → [0, 1, 0.5, 0, 0.75, 0]
  // Σ = [1, 1, -0.25, 1, 0.75, -1.5]
  it('drop outliers and small entries, then sum', () => {
    const spec = parseMergeSpec({ method: 'breadcrumbs', density: 0.5, gamma: 0.2 })
    expectClose(mergeTensor(spec, goldenInput()), [1.5, 0, 1.75, 1, 1.75, -3.5])
  })

  it('when gamma + density > 1, fewer outliers are removed so density still holds', () => {
    // density 5/6 → keep 5; gamma 0.4 → 2 outliers wanted, but 6 - 5 - 2 < 0 → remove 1 largest, 0 smallest.
    // a drops 2 → [1, -0.5, 0.25, 0.125, 0, -1.5]
    const spec = parseMergeSpec({ method: 'breadcrumbs', density: 5 / 6 + 1e-9, gamma: 0.4 })
    expectClose(mergeTensor(spec, goldenInput(['a'])), [1.5, -1.5, 2.25, 0.125, 1, -3.5])
  })

  it('gamma·n < 1 removes no outliers (mergekit would keep nothing here)', () => {
    // gamma 0.1 → ⌊0.6⌋ = 0 outliers; density 0.5 → keep the 3 largest of a: [1, 0, 0, 0, 2, -1.5]
    const spec = parseMergeSpec({ method: 'breadcrumbs', density: 0.5, gamma: 0.1 })
    expectClose(mergeTensor(spec, goldenInput(['a'])), [1.5, -1, 2, 0, 3, -3.5])
  })
})
