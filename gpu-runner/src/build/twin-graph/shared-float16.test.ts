import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type InferenceRequest, parseRecipe } from '@twinserve/shared'
import { afterAll, describe, expect, it } from 'vitest'
import { MLP_SIZES, writeBuildFixture } from '../../../test-support/test-models.ts'
import { mergeTensor } from '../../merge/merge-tensor.ts'
import { loadModel } from '../../model/load-model.ts'
import { readExclusiveFactors } from '../../model/materialize.ts'
import { loadPackage } from '../../package/load-package.ts'
import { buildDelta } from '../build-delta.ts'
import { buildPackage } from '../build-package.ts'
import { readOnnxBytes, tensorToFloat32 } from '../import/read-onnx.ts'
import { createReporter } from '../pipeline/progress.ts'
import { roundToFloat16 } from './shared-float16.ts'

const root = await mkdtemp(join(tmpdir(), 'twinserve-shared-f16-'))
afterAll(() => rm(root, { recursive: true, force: true }))

const FLOAT = 1
const FLOAT16 = 10
const WEIGHTS = ['fc1.weight', 'fc2.weight', 'head.weight']

describe('shared_dtype: float16 and router.dtype: float16 (issue #18)', async () => {
  // Full rank everywhere (energy 1), no variants: a one-hot mix must reproduce each expert in both builds.
  const recipe = { variants: [], shared_file: false, exclusive: { energy: 1 } }
  const fx32 = await writeBuildFixture(join(root, 'f32'), { recipe })
  const fx16 = await writeBuildFixture(join(root, 'f16'), {
    recipe: {
      ...recipe,
      shared_dtype: 'float16',
      router: {
        data: 'routing.jsonl',
        hidden: [16],
        epochs: 20,
        lr: 0.01,
        batch_size: 16,
        seed: 1,
        dtype: 'float16',
      },
    },
  })
  const quiet = (out: string) => ({ out, reporter: createReporter({ quiet: true }) })
  const r32 = await buildPackage(fx32.recipePath, quiet(join(root, 'f32-out')))
  const r16 = await buildPackage(fx16.recipePath, quiet(join(root, 'f16-out')))
  const [p32, p16] = [await loadPackage(r32.dir), await loadPackage(r16.dir)]
  const [g32, g16] = [readOnnxBytes(p32.model, 'f32'), readOnnxBytes(p16.model, 'f16')]

  it('stores the shared weights as FLOAT16 under their own names, each read through one Cast; vectors stay float32', () => {
    for (const w of WEIGHTS) {
      expect(g16.initializers.get(w)?.dataType, w).toBe(FLOAT16)
      expect(g32.initializers.get(w)?.dataType, w).toBe(FLOAT)
      const uses = (g16.graph.node ?? []).filter((n) => n.input?.includes(w))
      expect(uses.map((n) => n.opType)).toEqual(['Cast'])
    }
    expect(g16.initializers.get('fc1.bias')?.dataType).toBe(FLOAT)
  })

  it('the stored values are the shared merge rounded to float16, and the runner reads them back as such', () => {
    const f16 = readExclusiveFactors(g16.graph, p16.manifest)
    const f32 = readExclusiveFactors(g32.graph, p32.manifest)
    for (const w of WEIGHTS) {
      const a = f16.find((f) => f.name === w)
      const b = f32.find((f) => f.name === w)
      const exact = tensorToFloat32(g32.initializers.get(w) ?? {})
      expect(Array.from(a?.shared ?? [])).toEqual(Array.from(roundToFloat16(exact)))
      expect(Array.from(b?.shared ?? [])).toEqual(Array.from(exact))
      // The rounding is real (else this test proves nothing) and small.
      expect(Array.from(a?.shared ?? [])).not.toEqual(Array.from(exact))
    }
  })

  it('verifies as the float32 build does: zero weights give the (rounded) shared model exactly, one-hot gives each expert', () => {
    const v16 = r16.verification
    expect(v16.zeroWeightsMaxAbsDiff).toBe(0)
    v16.experts.forEach((e, t) => {
      const e32 = r32.verification.experts[t]
      // Full rank against the rounded shared model: the exclusive knowledge absorbs the rounding.
      expect(e.oneHotMaxAbsDiff).toBeLessThan(1e-4 * e.sharedMaxAbsDiff)
      expect(e32?.oneHotMaxAbsDiff ?? 1).toBeLessThan(1e-4 * (e32?.sharedMaxAbsDiff ?? 0))
    })
  })

  it('stores the router weight matrices as FLOAT16 and the embedded router still agrees with the trained one', () => {
    const routerInits = [...g16.initializers].filter(([n]) => n.startsWith('twin/router/'))
    const matrices = routerInits.filter(([n]) => /fc\d\.weight/.test(n))
    expect(matrices.length).toBeGreaterThan(0)
    for (const [n, t] of matrices) expect(t.dataType, n).toBe(FLOAT16)
    for (const [n, t] of routerInits.filter(([x]) => /fc\d\.bias/.test(x)))
      expect(t.dataType, n).toBe(FLOAT)
    expect(r16.verification.routerAgreement).toBeGreaterThanOrEqual(0.99)
  })

  it('saves half of the shared weights and of the router matrices', () => {
    const bytesOf = (g: typeof g16, pick: (n: string) => boolean) =>
      [...g.initializers]
        .filter(([n]) => pick(n))
        .reduce((a, [, t]) => a + (t.rawData?.byteLength ?? 0), 0)
    const shared = (n: string) => WEIGHTS.includes(n)
    expect(bytesOf(g16, shared) * 2).toBe(bytesOf(g32, shared))
    expect(r16.sizes.packageBytes).toBeLessThan(r32.sizes.packageBytes)
  })

  it('serves the materialised merge path from the float16 weights (they become float32 inputs), as the factored path', async () => {
    const served = await loadModel(r16.dir, {
      provider: 'cpu',
      threads: 1,
      merge: mergeTensor,
      mergeCache: { maxEntries: 2, maxBytes: 1 << 20 },
    })
    try {
      const x = Array.from({ length: MLP_SIZES.dIn }, (_, j) => Math.sin(j * 1.7) * 2)
      const run = async (parameters: InferenceRequest['parameters']) => {
        const p = served.prepare({
          inputs: [{ name: 'x', shape: [1, MLP_SIZES.dIn], datatype: 'FP32', data: x }],
          parameters,
        })
        const [out] = await served.run([p])
        return {
          path: p.path,
          y: (out?.outputs.find((o) => o.name === 'logits')?.data ?? []) as number[],
        }
      }
      const experts = { 'task-a': 0.3, 'task-b': 0.5, 'task-c': 0.2 }
      const factored = await run({ experts })
      const materialized = await run({ experts, merge_method: 'task_arithmetic' })
      expect(materialized.path).toBe('materialized')
      expect(factored.y).toHaveLength(MLP_SIZES.dOut)
      materialized.y.forEach((v, i) => {
        expect(Math.abs(v - (factored.y[i] as number))).toBeLessThan(1e-4)
      })
    } finally {
      await served.close()
    }
  })

  it('a --from build of such a package is refused with the reason (not supported yet), not half-done', async () => {
    await expect(
      buildDelta(fx16.recipePath, r16.dir, [{ op: 'remove', name: 'task-c' }], {
        out: join(root, 'delta-out'),
        reporter: createReporter({ quiet: true }),
      }),
    ).rejects.toThrow(/stores its shared weights as float16.*run a full build/)
  })

  it('the recipe refuses router.dtype on a router without weight matrices', () => {
    const base = {
      name: 'x',
      base: 'b.onnx',
      experts: [{ name: 'a', model: 'a.onnx' }],
      exclusive: { rank: 1 },
    }
    expect(() =>
      parseRecipe({ ...base, router: { data: 'r.jsonl', kind: 'prototype', dtype: 'float16' } }),
    ).toThrow(/router.dtype.*only the mlp router/)
    expect(parseRecipe({ ...base, router: { data: 'r.jsonl' } })).not.toHaveProperty('shared_dtype')
  })
})
