import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SHARED_VARIANT } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { writeBuildFixture } from '../../../test-support/test-models.ts'
import { loadPackage } from '../../package/load-package.ts'
import { writePackage } from '../../package/write-package.ts'
import { buildPackage } from '../build-package.ts'
import { modelInputs } from '../import/model-io.ts'
import { readOnnx } from '../import/read-onnx.ts'
import { readRoutingData } from '../router/routing-data.ts'
import { createReporter } from './progress.ts'
import { CHECK_BLOCK, type VerifyInput, verifyPackage } from './verify.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-verify-'))
afterAll(() => rm(root, { recursive: true, force: true }))

/** A build fixture built into `<root>/<name>-pkg`, with its routing examples read as verification reads them. */
async function built(name: string, opts?: Parameters<typeof writeBuildFixture>[1]) {
  const fx = await writeBuildFixture(join(root, name), opts)
  const out = join(root, `${name}-pkg`)
  const report = await buildPackage(fx.recipePath, {
    out,
    reporter: createReporter({ quiet: true }),
  })
  const inputs = modelInputs((await readOnnx(fx.base)).graph)
  const examples = await readRoutingData(
    fx.routing,
    fx.experts.map((e) => e.name),
    inputs,
  )
  return { fx, out, report, inputs, examples }
}

describe('verifyPackage', async () => {
  const { fx, out, report, inputs, examples } = await built('fx')
  const base: VerifyInput = {
    dir: out,
    inputs,
    outputs: ['logits'],
    experts: fx.experts.map((e) => ({ name: e.name, path: e.model })),
    checks: examples.slice(0, 6),
    heldout: examples.slice(0, 30),
    heldoutPredictions: new Int32Array(30),
  }

  it('fails when the embedded router disagrees with the router as trained', async () => {
    // The build itself passed with full agreement; made-up "trained" predictions (all expert 0) must not.
    expect(report.verification.routerAgreement).toBe(1)
    await expect(verifyPackage(base)).rejects.toThrow(
      /the embedded router agrees with the trained one on only \d+\.\d% of held-out examples/,
    )
  })

  it('fails when the shared variant is not the model the twin graph computes at zero weights', async () => {
    const pkg = await loadPackage(out)
    const { files: _f, ...manifest } = pkg.manifest
    const swapped = join(root, 'swapped')
    await writePackage(swapped, manifest, {
      'model.onnx': pkg.model,
      'variants/shared.onnx': pkg.variants.get('ties') as Uint8Array,
      'variants/ties.onnx': pkg.variants.get('ties') as Uint8Array,
    })
    await expect(
      verifyPackage({ ...base, dir: swapped, heldout: [], heldoutPredictions: new Int32Array(0) }),
    ).rejects.toThrow(
      /verification of the built package failed: all-zero weights differ from the shared model by/,
    )
    expect(pkg.variants.has(SHARED_VARIANT)).toBe(true)
  })
})

describe('verifyPackage with more experts than one check block', async () => {
  // 10 experts: blocks of 8 and 2. Expert t's one-hot rows run on its block's check inputs only.
  const T = CHECK_BLOCK + 2
  const { fx, out, report, inputs, examples } = await built('fx10', {
    experts: T,
    perExpert: 8,
    // Full rank (the MLP's matrices have rank 12 at most): one-hot rows reproduce each expert up to rounding.
    recipe: { exclusive: { rank: 12 }, variants: [], verify: { examples_per_expert: 2 } },
  })
  const checks = Array.from({ length: T }, (_, t) =>
    examples.filter((x) => x.expert === t).slice(0, 2),
  ).flat()
  const base: VerifyInput = {
    dir: out,
    inputs,
    outputs: ['logits'],
    experts: fx.experts.map((e) => ({ name: e.name, path: e.model })),
    checks,
    heldout: [],
    heldoutPredictions: new Int32Array(0),
  }

  it('checks every expert, in the last block too, with forward passes linear in T', async () => {
    expect(report.verification.experts).toHaveLength(T)
    let total = 0
    const result = await verifyPackage({ ...base, onProgress: (_, n) => (total = n) })
    for (const e of [...report.verification.experts, ...result.experts]) {
      expect(e.sharedMaxAbsDiff).toBeGreaterThan(1e-2)
      expect(e.oneHotMaxAbsDiff).toBeLessThan(1e-4)
    }
    // Rows run: per check input, zero weights plus, per expert of its block, a one-hot row and the expert's own
    // run: 16 inputs × (1 + 2·8) + 4 × (1 + 2·2), against 20 × (1 + 2·10) = 420 with every expert on every input.
    expect(total).toBe(16 * 17 + 4 * 5)
  })

  it('finds a wrong expert model in the last block', async () => {
    // Expert 9's "own model" swapped for expert 0's: its one-hot rows no longer match.
    const experts = base.experts.map((e, t) =>
      t === T - 1 ? { ...e, path: base.experts[0]?.path ?? '' } : e,
    )
    const result = await verifyPackage({ ...base, experts })
    expect(result.experts[T - 1]?.oneHotMaxAbsDiff ?? 0).toBeGreaterThan(1e-2)
    expect(result.experts[T - 2]?.oneHotMaxAbsDiff ?? 1).toBeLessThan(1e-4)
  })
})
