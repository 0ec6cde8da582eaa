/**
 * The data-free router (issue #18) on the generated MLP: built from the factors of the matrix that reads the
 * router feature (the head, used transposed by its Gemm), embedded in the twin graph, and the graph's routing
 * agrees with the scores computed here from the stored basis. Features it cannot read are refused by name.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { writeBuildFixture } from '../../../test-support/test-models.ts'
import { buildPackage } from '../build-package.ts'
import { createReporter } from '../pipeline/progress.ts'
import { dataFreeScores } from './data-free-router.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-data-free-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const quiet = (out: string) => ({ out, reporter: createReporter({ quiet: true }) })

describe('router.kind data-free', () => {
  it('builds from the head factors; the embedded router agrees with the scores from its basis', async () => {
    const fx = await writeBuildFixture(join(root, 'ok'), {
      recipe: {
        exclusive: { rank: 3 },
        router: { data: 'routing.jsonl', kind: 'data-free' },
        variants: [],
      },
    })
    const report = await buildPackage(fx.recipePath, quiet(join(root, 'ok-pkg')))
    expect(report.manifest.router.kind).toBe('data-free')
    const model = report.router.model
    if (model.kind !== 'data-free') throw new Error('not a data-free router')
    expect(model.matrix).toBe('head.weight')
    expect(model.expertOfColumn).toEqual(Int32Array.from([0, 0, 0, 1, 1, 1, 2, 2, 2]))
    expect(report.verification.routerAgreement).toBeGreaterThanOrEqual(0.99)
    // Scores lie in [0, 1] and do not depend on the feature's scale.
    const f = {
      x: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)),
      y: new Int32Array(2),
      d: 12,
    }
    const a = dataFreeScores(model, f, 3)
    const b = dataFreeScores(model, { ...f, x: f.x.map((v) => v * 7) }, 3)
    for (const [i, v] of a.entries()) {
      expect(v).toBeGreaterThanOrEqual(0)
      expect(v).toBeLessThanOrEqual(1)
      expect(b[i]).toBeCloseTo(v, 5)
    }
  })

  // The input reaches fc1 only through Gemm's transA: no matrix multiplies it as it is.
  it('refuses a feature no exclusive matrix multiplies, naming it', async () => {
    const fx = await writeBuildFixture(join(root, 'bad'), {
      recipe: {
        router: { data: 'routing.jsonl', kind: 'data-free', feature: 'x' },
        variants: [],
      },
    })
    await expect(buildPackage(fx.recipePath, quiet(join(root, 'bad-pkg')))).rejects.toThrow(
      /router\.kind data-free .* router\.feature 'x'/,
    )
  })
})
