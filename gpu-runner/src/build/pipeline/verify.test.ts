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
import { type VerifyInput, verifyPackage } from './verify.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-verify-'))
afterAll(() => rm(root, { recursive: true, force: true }))

describe('verifyPackage', async () => {
  const fx = await writeBuildFixture(join(root, 'fx'))
  const out = join(root, 'pkg')
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
