import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { DARE_GOLDEN, mergeGoldenPair } from '../../../test-support/merge-golden.ts'

runStrategyConformance({
  method: 'dare_ties',
  typical: { method: 'dare_ties', density: 0.5, majority_sign_method: 'frequency' },
  identity: { method: 'dare_ties' },
  densityOne: [
    {
      spec: { method: 'dare_ties', density: 1, normalize: true },
      equals: { method: 'ties', density: 1 },
    },
  ],
  random: { method: 'dare_ties', density: 0.5 },
})

describe('dare_ties: golden vectors', () => {
  // Same drops as dare_linear's golden: a'' = 43/26·[1, 0, 0.25, 0, 2, 0], b'' = 35/24·[0, 0.5, 0, 1, -1.5, 0].
  // Σ = [43/26, 35/48, 43/104, 35/24, 43/13 - 35/16 > 0, 0] → all +; value 4 keeps only a'' (b'' disagrees);
  // value 5: nothing agrees → 0. normalize=false (default): the agreeing sum.
  it('drop, rescale, elect, sum the agreeing entries', () => {
    const out = mergeGoldenPair({ method: 'dare_ties', density: 0.5 }, DARE_GOLDEN)
    expectClose(out, [0.5 + 43 / 26, -1 + 35 / 48, 2 + 43 / 104, 35 / 24, 1 + 43 / 13, -2])
  })
})
