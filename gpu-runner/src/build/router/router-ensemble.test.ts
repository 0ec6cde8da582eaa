import { describe, expect, it } from 'vitest'
import { initMlp, type MlpWeights } from '../../train/index.ts'
import { ensembleMlp } from './router-ensemble.ts'

/** y = x·W + b per layer, ReLU between layers (the MLP the router graph computes). */
function forward(w: MlpWeights, x: Float32Array): Float32Array {
  let h = x
  w.layers.forEach((l, i) => {
    const nIn = w.sizes[i] as number
    const nOut = w.sizes[i + 1] as number
    const out = new Float32Array(nOut)
    for (let c = 0; c < nOut; c++) {
      let s = l.bias[c] as number
      for (let r = 0; r < nIn; r++) s += (h[r] as number) * (l.weight[r * nOut + c] as number)
      out[c] = i < w.layers.length - 1 ? Math.max(0, s) : s
    }
    h = out
  })
  return h
}

/** Non-zero biases too, so a mistake in how they are merged shows. */
function member(sizes: number[], seed: number): MlpWeights {
  const w = initMlp(sizes, seed)
  for (const l of w.layers)
    for (let k = 0; k < l.bias.length; k++) l.bias[k] = Math.sin(seed * 7 + k)
  return w
}

describe('ensembleMlp', () => {
  it.each([
    ['linear', [6, 4], 3],
    ['one hidden layer', [6, 5, 4], 3],
    ['two hidden layers', [6, 5, 3, 4], 2],
  ])('%s: the merged MLP computes the members’ mean logits', (_name, sizes, n) => {
    const members = Array.from({ length: n }, (_, s) => member(sizes, s + 1))
    const merged = ensembleMlp(members)
    expect(merged.sizes[0]).toBe(sizes[0])
    expect(merged.sizes.at(-1)).toBe(sizes.at(-1))
    // A linear ensemble costs one member; hidden widths add up.
    expect(merged.sizes.slice(1, -1)).toEqual(sizes.slice(1, -1).map((h) => h * n))
    for (let t = 0; t < 5; t++) {
      const x = Float32Array.from({ length: sizes[0] as number }, (_, j) => Math.cos(t * 3 + j))
      const want = new Float32Array(sizes.at(-1) as number)
      for (const m of members) {
        const y = forward(m, x)
        for (let k = 0; k < want.length; k++) want[k] = (want[k] as number) + (y[k] as number) / n
      }
      const got = forward(merged, x)
      for (let k = 0; k < want.length; k++)
        expect(Math.abs((got[k] as number) - (want[k] as number))).toBeLessThan(1e-5)
    }
  })

  it('one member is that member; members of different sizes are refused', () => {
    const a = member([6, 4], 1)
    expect(ensembleMlp([a])).toBe(a)
    expect(() => ensembleMlp([a, member([6, 5, 4], 2)])).toThrow(/differ in layer sizes/)
    expect(() => ensembleMlp([])).toThrow(/at least one member/)
  })
})
