/**
 * Opsets 9 to 21 (issue #13): the same models exported at each opset build into twin graphs that use only the ops
 * and forms that opset has, and that compute the same thing: expert weights and outputs for explicit mixes,
 * router rows with top_k, a mask and an abstain threshold, and top-k gather, equal to the opset-17 build's.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { MLP_SIZES, writeBuildFixture } from '../../../test-support/test-models.ts'
import { onnx, toNumber } from '../../onnx/proto.ts'
import { openSession, ort } from '../../runtime/ort-session.ts'
import { encodeControls, type RowControls } from '../../twin-contract/encode-controls.ts'
import { buildPackage } from '../build-package.ts'
import { createReporter } from '../pipeline/progress.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-opsets-'))
afterAll(() => rm(root, { recursive: true, force: true }))

const ROWS: RowControls[] = [
  { mixWeights: [0.2, 0.5, 0.3] },
  { useRouter: 1 },
  { useRouter: 1, topK: 1 },
  { useRouter: 1, topK: 2, expertMask: [1, 0, 1] },
  { useRouter: 1, abstainBelow: 0.99 },
  {},
]

/** The twin graph's op types, and its Unsqueeze nodes' input counts (2 from opset 13: axes as an input). */
async function opsOf(dir: string): Promise<{ ops: Set<string>; unsqueezeInputs: Set<number> }> {
  const m = onnx.ModelProto.decode(await readFile(join(dir, 'model.onnx')))
  const nodes = [...(m.graph?.node ?? [])]
  for (const n of m.graph?.node ?? [])
    for (const a of n.attribute ?? []) if (a.g) nodes.push(...(a.g.node ?? []))
  return {
    ops: new Set(nodes.map((n) => n.opType ?? '')),
    unsqueezeInputs: new Set(
      nodes.filter((n) => n.opType === 'Unsqueeze').map((n) => n.input?.length ?? 0),
    ),
  }
}

async function outputsOf(dir: string): Promise<{ logits: Float32Array; weights: Float32Array }> {
  const { session } = await openSession(join(dir, 'model.onnx'), { provider: 'cpu' })
  try {
    const B = ROWS.length
    const x = new ort.Tensor(
      'float32',
      Float32Array.from({ length: B * MLP_SIZES.dIn }, (_, i) => Math.sin(i) * 2),
      [B, MLP_SIZES.dIn],
    )
    const out = await session.run({ x, ...encodeControls(ROWS, 3) })
    return {
      logits: out.logits?.data as Float32Array,
      weights: out[TWIN_OUTPUT_WEIGHTS]?.data as Float32Array,
    }
  } finally {
    await session.release()
  }
}

async function buildAt(opset: number, topk: boolean): Promise<string> {
  const fx = await writeBuildFixture(join(root, `fx-${opset}-${topk}`), {
    opset,
    recipe: {
      variants: [],
      exclusive: { rank: 2, ...(topk ? { topk_gather: 2 } : {}) },
      router: { data: 'routing.jsonl', kind: 'prototype' },
    },
  })
  const out = join(root, `pkg-${opset}-${topk}`)
  await buildPackage(fx.recipePath, { out, reporter: createReporter({ quiet: true }) })
  return out
}

const close = (a: Float32Array, b: Float32Array) => {
  expect(a.length).toBe(b.length)
  a.forEach((x, i) => {
    expect(Math.abs(x - (b[i] as number)), `index ${i}`).toBeLessThan(1e-5)
  })
}

describe('twin graphs at opsets 9 to 21', async () => {
  const reference = {
    dense: await outputsOf(await buildAt(17, false)),
    topk: await outputsOf(await buildAt(17, true)),
  }

  for (const opset of [9, 10, 11, 12, 13, 18, 21])
    it(`opset ${opset}: only its ops and forms, the same weights and outputs as opset 17`, async () => {
      for (const topk of [false, true]) {
        const dir = await buildAt(opset, topk)
        const m = onnx.ModelProto.decode(await readFile(join(dir, 'model.onnx')))
        expect(toNumber(m.opsetImport?.[0]?.version)).toBe(opset)
        const { ops, unsqueezeInputs } = await opsOf(dir)
        if (opset < 11)
          expect([...ops].filter((o) => o === 'GatherElements' || o === 'ScatterElements')).toEqual(
            [],
          )
        if (opset < 12) expect(ops.has('GreaterOrEqual')).toBe(false)
        // The top-k gather graph unsqueezes its indices; the dense MLP graph needs no Unsqueeze.
        expect([...unsqueezeInputs]).toEqual(topk ? [opset < 13 ? 1 : 2] : [])
        const got = await outputsOf(dir)
        const want = topk ? reference.topk : reference.dense
        close(got.weights, want.weights)
        close(got.logits, want.logits)
      }
    })
})
