import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { DELLA_GOLDEN, mergeGoldenPair } from '../../../test-support/merge-golden.ts'

runStrategyConformance({
  method: 'della',
  typical: { method: 'della', density: 0.5, epsilon: 0.1 },
  identity: { method: 'della' },
  densityOne: [{ spec: { method: 'della', density: 1 }, equals: { method: 'ties', density: 1 } }],
  random: { method: 'della', density: 0.5 },
})

describe('della: golden vectors', () => {
  // Σ = a + b: value 4 is 86/38 - 52.5/26 > 0 → only a agrees; value 5: both negative → mean of the two.
  it('MagPrune per row, rescale, elect, disjoint mean', () => {
    const out = mergeGoldenPair(
      { method: 'della', density: 0.5, epsilon: 0.2 },
      DELLA_GOLDEN,
      [2, 3],
    )
    expectClose(out, [
      0.5 + 43 / 38,
      -1 + 17.5 / 26,
      2 + 43 / 152,
      35 / 26,
      1 + 86 / 38,
      -2 + (-64.5 / 38 - 8.75 / 26) / 2,
    ])
  })
})
