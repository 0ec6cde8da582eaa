import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { BASE, DELLA_GOLDEN, mergeGoldenPair } from '../../../test-support/merge-golden.ts'

runStrategyConformance({
  method: 'della_linear',
  typical: { method: 'della_linear', density: 0.4, epsilon: 0.2, lambda: 0.9 },
  identity: { method: 'della_linear' },
  densityOne: [
    { spec: { method: 'della_linear', density: 1 }, equals: { method: 'task_arithmetic' } },
  ],
  random: { method: 'della_linear', density: 0.5 },
})

describe('della_linear: golden vectors', () => {
  it('MagPrune per row, rescale, plain sum', () => {
    // Same masks as della's golden (see DELLA_GOLDEN), summed without sign election.
    const out = mergeGoldenPair(
      { method: 'della_linear', density: 0.5, epsilon: 0.2 },
      DELLA_GOLDEN,
      [2, 3],
    )
    expectClose(
      out,
      BASE.map((b, j) => b + (DELLA_GOLDEN.a[j] as number) + (DELLA_GOLDEN.b[j] as number)),
    )
    // Spot-check the arithmetic above with the numbers written out.
    expectClose(
      out,
      [1.631578947, -0.326923077, 2.282894737, 1.346153846, 1.243927126, -4.033906883],
    )
  })
})
