import { parseMergeSpec } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import {
  expectAppError,
  expectClose,
  randomGram,
  runStrategyConformance,
} from '../../../test-support/merge-conformance.ts'
import { goldenInput } from '../../../test-support/merge-golden.ts'
import { mergeTensor } from '../merge-tensor.ts'
import { createRng } from '../rng.ts'
import type { TensorMergeInput } from '../types.ts'

// Without Grams (biases, norms, embeddings): the weighted average. With them: the closed form.
runStrategyConformance({
  method: 'regmean',
  typical: { method: 'regmean', alpha: 0.7 },
  identity: { method: 'regmean' },
})
runStrategyConformance({
  method: 'regmean',
  typical: { method: 'regmean', alpha: 0.7 },
  identity: { method: 'regmean' },
  grams: true,
})

const spec = (alpha: number, experts: Record<string, { weight: number }> = {}) =>
  parseMergeSpec({ method: 'regmean', alpha, experts })

/** A [dIn, dOut] weight per expert (stored as given, or transposed) with its Gram matrix. */
function linear(
  weights: readonly number[][],
  grams: readonly number[][],
  dIn: number,
  transposed = false,
): TensorMergeInput {
  const dOut = (weights[0] as number[]).length / dIn
  return {
    base: new Float32Array(dIn * dOut),
    experts: weights.map((w) => Float32Array.from(w)),
    names: weights.map((_, i) => `e${i}`),
    shape: transposed ? [dOut, dIn] : [dIn, dOut],
    tensorName: 'fc.weight',
    grams: { perExpert: grams.map((g) => Float64Array.from(g)), dIn, transposed },
  }
}

// The ridge (1e-6 of the mean diagonal) moves the hand-computed answers by about 1e-6 relative.
const TOL = 1e-5

describe('regmean: the published formula W* = (Σ G̃_i)⁻¹ Σ G̃_i W_i', () => {
  // G_a = [[2, 1], [1, 1]], G_b = [[1, 0], [0, 3]], W_a = [1, 0]ᵀ, W_b = [0, 1]ᵀ ([d_in 2, d_out 1]).
  const input = linear(
    [
      [1, 0],
      [0, 1],
    ],
    [
      [2, 1, 1, 1],
      [1, 0, 0, 3],
    ],
    2,
  )

  it('alpha 1 (plain least squares): ΣG = [[3, 1], [1, 4]], ΣGW = [2, 4] → [4/11, 10/11]', () => {
    // det 11; x = [4·2 − 1·4, −1·2 + 3·4] / 11
    expectClose(mergeTensor(spec(1), input), [4 / 11, 10 / 11], TOL)
  })

  it('alpha 0.5 halves the off-diagonal: ΣG̃ = [[3, .5], [.5, 4]], ΣG̃W = [2, 3.5] → [25/47, 38/47]', () => {
    // det 11.75; x = [4·2 − .5·3.5, −.5·2 + 3·3.5] / 11.75 = [6.25, 9.5] / 11.75
    expectClose(mergeTensor(spec(0.5), input), [25 / 47, 38 / 47], TOL)
  })

  it('alpha 0: each input row is averaged by the experts’ input energies diag(G_i)', () => {
    // row 0: (2·1 + 1·0) / 3, row 1: (1·0 + 3·1) / 4
    expectClose(mergeTensor(spec(0), input), [2 / 3, 3 / 4], TOL)
  })

  it('an expert weight scales its Gram: weight 2 on a equals a given twice', () => {
    const weighted = mergeTensor(spec(0.9, { e0: { weight: 2 } }), input)
    const twice = linear(
      [
        [1, 0],
        [1, 0],
        [0, 1],
      ],
      [
        [2, 1, 1, 1],
        [2, 1, 1, 1],
        [1, 0, 0, 3],
      ],
      2,
    )
    expectClose(weighted, mergeTensor(spec(0.9), twice), 1e-6)
  })

  it('minimises Σ_i ‖X_i·W − X_i·W_i‖²: the normal equations hold on random data', () => {
    // Independent check from the objective: its gradient Σ X_iᵀ(X_i·W* − X_i·W_i) vanishes at W*.
    const rng = createRng(5, 'regmean', 'lsq')
    const dIn = 5
    const dOut = 3
    const rows = 12
    const xs = [0, 1, 2].map(() => Float64Array.from({ length: rows * dIn }, () => rng.normal()))
    const ws = [0, 1, 2].map(() => Array.from({ length: dIn * dOut }, () => rng.normal()))
    const gram = (x: Float64Array) => {
      const g = new Array<number>(dIn * dIn).fill(0)
      for (let r = 0; r < rows; r++)
        for (let a = 0; a < dIn; a++)
          for (let b = 0; b < dIn; b++)
            g[a * dIn + b] =
              (g[a * dIn + b] as number) + (x[r * dIn + a] as number) * (x[r * dIn + b] as number)
      return g
    }
    const out = mergeTensor(spec(1), linear(ws, xs.map(gram), dIn))
    const grad = new Float64Array(dIn * dOut)
    let scale = 0
    xs.forEach((x, i) => {
      const w = ws[i] as number[]
      for (let r = 0; r < rows; r++)
        for (let c = 0; c < dOut; c++) {
          let diff = 0
          for (let k = 0; k < dIn; k++)
            diff +=
              (x[r * dIn + k] as number) *
              ((out[k * dOut + c] as number) - (w[k * dOut + c] as number))
          for (let a = 0; a < dIn; a++) {
            grad[a * dOut + c] = (grad[a * dOut + c] as number) + (x[r * dIn + a] as number) * diff
            scale = Math.max(scale, Math.abs((x[r * dIn + a] as number) * diff))
          }
        }
    })
    for (const g of grad) expect(Math.abs(g)).toBeLessThan(1e-4 * Math.max(scale, 1))
    // …and it is not the plain average (the data matter).
    const avg = Array.from(
      { length: dIn * dOut },
      (_, j) => ws.reduce((a, w) => a + (w[j] as number), 0) / 3,
    )
    expect(Math.max(...avg.map((v, j) => Math.abs(v - (out[j] as number))))).toBeGreaterThan(0.05)
  })
})

describe('regmean: properties', () => {
  const rng = createRng(9, 'regmean', 'props')
  const dIn = 4
  const dOut = 3
  const ws = [0, 1, 2].map(() => Array.from({ length: dIn * dOut }, () => rng.normal()))
  const grams = [0, 1, 2].map(() => [...randomGram(dIn, 10, rng)])

  it('identical Grams give the weighted average', () => {
    const same = [grams[0], grams[0], grams[0]] as number[][]
    const out = mergeTensor(
      spec(0.9, { e0: { weight: 1 }, e1: { weight: 2 }, e2: { weight: 1 } }),
      linear(ws, same, dIn),
    )
    const avg = Array.from(
      { length: dIn * dOut },
      (_, j) => ((ws[0]?.[j] as number) + 2 * (ws[1]?.[j] as number) + (ws[2]?.[j] as number)) / 4,
    )
    expectClose(out, avg, 1e-5)
  })

  it('one expert gives that expert back', () => {
    expectClose(
      mergeTensor(spec(0.9), linear([ws[0] as number[]], [grams[0] as number[]], dIn)),
      ws[0] as number[],
      1e-5,
    )
  })

  it('a transposed weight ([d_out, d_in], Gemm transB=1) merges as its [d_in, d_out] form', () => {
    const tr = (w: readonly number[]) =>
      Array.from(
        { length: dIn * dOut },
        (_, j) => w[(j % dIn) * dOut + Math.floor(j / dIn)] as number,
      )
    const plain = mergeTensor(spec(0.8), linear(ws, grams, dIn))
    const stored = mergeTensor(spec(0.8), linear(ws.map(tr), grams, dIn, true))
    expectClose(stored, tr([...plain]), 1e-6)
  })

  it('an input no expert ever sees (zero Gram row) keeps the average in its row of W', () => {
    const dead = grams.map((g) =>
      g.map((v, j) => (Math.floor(j / dIn) === 0 || j % dIn === 0 ? 0 : v)),
    )
    const out = mergeTensor(spec(1), linear(ws, dead, dIn))
    for (let c = 0; c < dOut; c++)
      expect(out[c]).toBeCloseTo(ws.reduce((a, w) => a + (w[c] as number), 0) / 3, 5)
  })

  it('a tensor without Grams is the weighted average (biases, norms)', () => {
    const out = mergeTensor(spec(0.9, { a: { weight: 3 } }), goldenInput(['a', 'b']))
    const { experts } = goldenInput(['a', 'b'])
    expectClose(
      out,
      Array.from(
        { length: 6 },
        (_, j) => (3 * (experts[0]?.[j] as number) + (experts[1]?.[j] as number)) / 4,
      ),
    )
  })
})

describe('regmean: bad Grams are refused before merging', () => {
  const ok = linear(
    [
      [1, 0],
      [0, 1],
    ],
    [
      [2, 1, 1, 1],
      [1, 0, 0, 3],
    ],
    2,
  )

  it('a width that does not fit the weight is INCOMPATIBLE_EXPERTS', () => {
    expectAppError(
      () =>
        mergeTensor(spec(0.9), {
          ...ok,
          grams: { ...(ok.grams as NonNullable<typeof ok.grams>), dIn: 1 },
        }),
      'INCOMPATIBLE_EXPERTS',
      /fc\.weight: Gram matrices of width 1/,
    )
  })

  it('one Gram per expert', () => {
    const g = ok.grams as NonNullable<typeof ok.grams>
    expectAppError(
      () => mergeTensor(spec(0.9), { ...ok, grams: { ...g, perExpert: g.perExpert.slice(0, 1) } }),
      'INCOMPATIBLE_EXPERTS',
      /1 Gram matrices for 2 experts/,
    )
  })

  it('a NaN in a Gram is INVALID_MODEL naming the expert', () => {
    const g = ok.grams as NonNullable<typeof ok.grams>
    const bad = Float64Array.from(g.perExpert[1] as Float64Array)
    bad[2] = Number.NaN
    expectAppError(
      () =>
        mergeTensor(spec(0.9), {
          ...ok,
          grams: { ...g, perExpert: [g.perExpert[0] as Float64Array, bad] },
        }),
      'INVALID_MODEL',
      /expert e1's Gram matrix value 2/,
    )
  })
})
