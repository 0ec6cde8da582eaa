import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { writeBuildFixture } from '../../../test-support/test-models.ts'
import type { INodeProto } from '../../onnx/proto.ts'
import { loadPackage } from '../../package/load-package.ts'
import { openSession, type ort } from '../../runtime/ort-session.ts'
import { encodeControls } from '../../twin-contract/encode-controls.ts'
import { buildPackage } from '../build-package.ts'
import { outerInputs } from '../graph/graph-editor.ts'
import { modelInputs, syntheticFeeds } from '../import/model-io.ts'
import { readOnnx, readOnnxBytes } from '../import/read-onnx.ts'
import { createReporter } from '../pipeline/progress.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-gate-'))
afterAll(() => rm(root, { recursive: true, force: true }))
const T = 3

function controls(rows: { mix: number[]; router: boolean }[]) {
  return encodeControls(
    rows.map((r) => ({
      mixWeights: r.mix,
      useRouter: r.router ? 1 : 0,
    })),
    T,
  )
}

describe('router gate', async () => {
  // The MLP's default feature (input of its last Gemm) depends on rewritten layers: the router needs its own
  // shared-model pass, which must only run when a row uses the router.
  const fx = await writeBuildFixture(join(root, 'fx'), { recipe: { variants: [] } })
  const out = join(root, 'pkg')
  await buildPackage(fx.recipePath, { out, reporter: createReporter({ quiet: true }) })
  const pkg = await loadPackage(out)

  it('puts the router and its shared-model pass inside an If on any(use_router)', () => {
    const graph = readOnnxBytes(pkg.model, 'twin').graph
    const gates = (graph.node ?? []).filter((n) => n.opType === 'If')
    expect(gates).toHaveLength(1)
    const gate = gates[0] as INodeProto
    const then = gate.attribute?.find((a) => a.name === 'then_branch')?.g
    const ops = (then?.node ?? []).map((n) => n.opType)
    // A copy of the shared layers (fc1 Gemm, fc2 MatMul) and the router's softmax.
    expect(ops).toContain('Gemm')
    expect(ops).toContain('MatMul')
    expect(ops).toContain('Softmax')
    expect((graph.node ?? []).some((n) => n.opType === 'Softmax')).toBe(false)
    // It reads the model input from the enclosing scope, and the sort placed it after nothing it needs.
    expect(outerInputs(gate)).toContain('x')
  })

  it('gives the same rows whether or not another row in the batch routes', async () => {
    const { session } = await openSession(pkg.model, { provider: 'cpu' })
    try {
      const inputs = modelInputs((await readOnnx(fx.base)).graph)
      const x = syntheticFeeds(inputs, 2, 4)
      const explicit = { mix: [0.2, 0.5, 0.3], router: false }
      const routed = { mix: [0, 0, 0], router: true }
      const both = await session.run({ ...x, ...controls([explicit, routed]) })
      const noRouter = await session.run({ ...x, ...controls([explicit, explicit]) })
      const allRouter = await session.run({ ...x, ...controls([routed, routed]) })
      const slice = (t: ort.Tensor | undefined, row: number, n: number) =>
        Array.from(((t?.data ?? new Float32Array()) as Float32Array).subarray(row * n, row * n + n))
      const logits = (o: typeof both, row: number) => slice(o.logits, row, 4)
      const weights = (o: typeof both, row: number) => slice(o.expert_weights, row, T)
      expect(logits(both, 0)).toEqual(logits(noRouter, 0))
      expect(logits(both, 1)).toEqual(logits(allRouter, 1))
      expect(weights(both, 1)).toEqual(weights(allRouter, 1))
      expect(weights(both, 1).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5)
      expect(weights(noRouter, 0)).toEqual(Array.from(Float32Array.of(0.2, 0.5, 0.3)))
    } finally {
      await session.release()
    }
  })
})
