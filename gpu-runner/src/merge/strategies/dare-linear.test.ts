import { describe, it } from 'vitest'
import { expectClose, runStrategyConformance } from '../../../test-support/merge-conformance.ts'
import { DARE_GOLDEN, mergeGoldenPair } from '../../../test-support/merge-golden.ts'

runStrategyConformance({
  method: 'dare_linear',
  typical: { method: 'dare_linear', density: 0.5, lambda: 0.8 },
  identity: { method: 'dare_linear' },
  densityOne: [
    { spec: { method: 'dare_linear', density: 1 }, equals: { method: 'task_arithmetic' } },
    {
      spec: { method: 'dare_linear', density: 1, normalize: true, lambda: 0.3 },
      equals: { method: 'task_arithmetic', normalize: true, lambda: 0.3 },
    },
  ],
  random: { method: 'dare_linear', density: 0.5 },
})

describe('dare_linear: golden vectors', () => {
  // Fixed uniforms (DARE_GOLDEN); an entry survives when u < density = 0.5.
  //   a: u = [0.1, 0.7, 0.3, 0.9, 0.2, 0.6] → keep 0, 2, 4: [1, 0, 0.25, 0, 2, 0]
  //      L1 rescale ‖δ_a‖₁ / ‖kept‖₁ = 5.375 / 3.25 = 43/26
  //   b: u = [0.6, 0.2, 0.8, 0.4, 0.1, 0.95] → keep 1, 3, 4: [0, 0.5, 0, 1, -1.5, 0]
  //      scale 4.375 / 3 = 35/24
  it('drop, L1-rescale, sum', () => {
    const out = mergeGoldenPair({ method: 'dare_linear', density: 0.5 }, DARE_GOLDEN)
    expectClose(out, [
      0.5 + 43 / 26,
      -1 + 35 / 48,
      2 + 43 / 104,
      35 / 24,
      1 + 43 / 13 - 35 / 16,
      -2,
    ])
  })

  it('rescale=false keeps the survivors as they are', () => {
    const out = mergeGoldenPair(
      { method: 'dare_linear', density: 0.5, rescale: false },
      DARE_GOLDEN,
    )
    // [1, 0.5, 0.25, 1, 2 - 1.5, 0] + base
    expectClose(out, [1.5, -0.5, 2.25, 1, 1.5, -2])
  })
})
