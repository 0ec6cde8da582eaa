/**
 * `exclusive: { budget }` (issue #18): one byte budget over every matrix and expert, allocated by singular-value
 * energy per byte. Built end to end on the generated MLP; the ranks are checked against allocateRanks run on
 * spectra this test computes itself from the models, and the stored factors against the budget.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TWIN_FACTOR_SUFFIXES } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { writeBuildFixture } from '../../../test-support/test-models.ts'
import { allocateRanks, jacobiSvd } from '../../merge/index.ts'
import { loadPackage } from '../../package/load-package.ts'
import { buildPackage } from '../build-package.ts'
import { readOnnxBytes, tensorToFloat32 } from '../import/read-onnx.ts'
import { bytesPerRank } from './exclusive-knowledge.ts'
import { createReporter } from './progress.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-budget-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const quiet = (out: string) => ({ out, reporter: createReporter({ quiet: true }) })

// The MLP's matrices as stored, in graph order.
const MATRICES: [string, number, number][] = [
  ['fc1.weight', 8, 16],
  ['fc2.weight', 16, 12],
  ['head.weight', 4, 12],
]
const VECTOR_SIZES = [16, 12, 4]

describe('exclusive.budget on the generated MLP', async () => {
  const budget = 0.3
  const fx = await writeBuildFixture(join(root, 'mlp'), {
    recipe: { exclusive: { budget }, variants: [] },
  })
  const out = join(root, 'pkg')
  const report = await buildPackage(fx.recipePath, quiet(out))
  const pkg = await loadPackage(out)
  const T = fx.experts.length

  it('keeps the ranks allocateRanks picks from the deltas’ spectra, within the budget', () => {
    const shared = readOnnxBytes(pkg.model, 'twin')
    const candidates = MATRICES.flatMap(([name, rows, cols]) => {
      const t = shared.initializers.get(name)
      if (!t) throw new Error(`no ${name} in the twin graph`)
      const sv = tensorToFloat32(t)
      return fx.params.experts.map((e) => {
        const delta = e(name, [rows, cols]).map((x, i) => x - (sv[i] as number))
        return {
          sigma: jacobiSvd(delta, rows, cols).S,
          bytesPerRank: bytesPerRank(rows, cols, 'float32'),
        }
      })
    })
    const vectorBytes = T * VECTOR_SIZES.reduce((a, b) => a + b, 0) * 4
    const expected = allocateRanks(candidates, budget * report.sizes.expertsBytes - vectorBytes)
    const ranks = MATRICES.map(
      ([name]) => report.exclusive.find((r) => r.name === name)?.ranks ?? [],
    )
    expect(ranks.flat()).toEqual(expected.ranks)
    // Ragged: the allocation differs across tensors and experts, and no matrix is at its full rank everywhere.
    expect(new Set(ranks.flat()).size).toBeGreaterThan(1)
    expect(expected.bytes).toBeLessThanOrEqual(budget * report.sizes.expertsBytes - vectorBytes)
  })

  it('stores factors (U, Vᵀ, σ, expert index) that fit the budget, and the build verified', () => {
    const twin = readOnnxBytes(pkg.model, 'twin')
    const S = TWIN_FACTOR_SUFFIXES
    let stored = 0
    for (const [name] of MATRICES)
      for (const suffix of [S.u, S.v, S.sigma, S.expertOfRank]) {
        const t = twin.initializers.get(`${name}${suffix}`)
        stored += t?.rawData?.byteLength ?? 0
      }
    const vectorBytes = T * VECTOR_SIZES.reduce((a, b) => a + b, 0) * 4
    expect(stored).toBeGreaterThan(0)
    expect(stored + vectorBytes).toBeLessThanOrEqual(budget * report.sizes.expertsBytes)
    expect(report.verification.zeroWeightsMaxAbsDiff).toBe(0)
    for (const e of report.verification.experts)
      expect(e.oneHotMaxAbsDiff).toBeLessThan(e.sharedMaxAbsDiff)
  })

  it('refuses a budget the exact vector deltas alone exceed, naming both sizes', async () => {
    const small = await writeBuildFixture(join(root, 'small'), {
      recipe: { exclusive: { budget: 0.001 }, variants: [] },
    })
    await expect(buildPackage(small.recipePath, quiet(join(root, 'small-pkg')))).rejects.toThrow(
      /exclusive\.budget 0\.001 allows .* MB .* but the exact vector deltas alone take .* MB/,
    )
  })
})
