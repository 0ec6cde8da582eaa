import { describe, it } from 'vitest'
import {
  expectClose,
  fixedUniforms,
  makeContext,
  runStrategyConformance,
  specOf,
} from '../conformance.case.ts'
import { getStrategy } from '../registry.ts'
import { BASE, DELLA_GOLDEN, goldenInput } from './golden.fixture.ts'

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
    const g = DELLA_GOLDEN
    const spec = specOf({ method: 'della_linear', density: 0.5, epsilon: 0.2 })
    const out = getStrategy('della_linear').merge(
      spec,
      makeContext(goldenInput(['a', 'b'], [2, 3]), [
        fixedUniforms(g.uniformsA),
        fixedUniforms(g.uniformsB),
      ]),
    )
    expectClose(
      out,
      BASE.map((b, j) => b + (g.a[j] as number) + (g.b[j] as number)),
    )
    // Spot-check the arithmetic above with the numbers written out.
    expectClose(
      out,
      [1.631578947, -0.326923077, 2.282894737, 1.346153846, 1.243927126, -4.033906883],
    )
  })
})
