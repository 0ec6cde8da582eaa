import { type MergeSpec, parseMergeSpec } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { makeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import {
  type FactorsWithShared,
  type MatrixFactors,
  shapeOf,
} from '../factors/exclusive-factors.ts'
import { MatmulBackend } from '../merge/matmul.ts'
import { mergeTensor } from '../merge/merge-tensor.ts'
import { onnx } from '../onnx/proto.ts'
import { ort } from '../runtime/ort-session.ts'
import {
  expertDelta,
  initializersToInputs,
  linearForm,
  materializeMerge,
  readExclusiveFactors,
} from './materialize.ts'

function randomFactors(
  rows: number,
  cols: number,
  perExpert: number[],
): MatrixFactors & { shared: Float32Array } {
  let seed = 3
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31 - 0.5
  }
  const R = perExpert.reduce((a, b) => a + b, 0)
  const expertOfRank = new Int32Array(R)
  let r = 0
  perExpert.forEach((k, t) => {
    for (let i = 0; i < k; i++) expertOfRank[r++] = t
  })
  return {
    kind: 'matrix',
    name: 'w',
    rows,
    cols,
    shared: new Float32Array(rows * cols),
    u: Float32Array.from({ length: rows * R }, rand),
    vt: Float32Array.from({ length: R * cols }, rand),
    sigma: Float32Array.from({ length: R }, () => 1 + rand()),
    expertOfRank,
  }
}

describe('expert deltas from the factors', () => {
  it('agree between the JS loop and the onnxruntime product, per expert (interleaved ranks too)', async () => {
    const f = randomFactors(96, 80, [16, 0, 12])
    // Interleave the experts' columns: the convention does not require them contiguous.
    f.expertOfRank.reverse()
    const backend = new MatmulBackend({ provider: 'cpu', threads: 1 })
    for (const t of [0, 1, 2]) {
      const js = await expertDelta(f, t)
      const onnxrt = await expertDelta(f, t, backend)
      expect(onnxrt).toHaveLength(96 * 80)
      let max = 0
      for (let i = 0; i < js.length; i++)
        max = Math.max(max, Math.abs((js[i] ?? 0) - (onnxrt[i] ?? 0)))
      expect(max).toBeLessThan(1e-5)
      if (t === 1) expect(js.every((v) => v === 0)).toBe(true)
    }
    expect(backend.stats.calls).toBe(2)
    await backend.dispose()
  })

  it('match the fixture’s dense deltas', async () => {
    const fx = makeTwinFixture()
    const graph = onnx.ModelProto.decode(fx.files['model.onnx'] as Uint8Array).graph ?? {}
    const factors = readExclusiveFactors(graph, { ...fx.manifest, files: {} })
    expect(factors.map((f) => [f.name, f.kind])).toEqual([
      ['layer1.weight', 'matrix'],
      ['layer1.bias', 'vector'],
      ['layer2.weight', 'matrix'],
    ])
    const w1 = factors[0]
    if (!w1) throw new Error('no factors')
    const d = await expertDelta(w1, 2)
    const want = fx.denseDelta('layer1.weight', 2)
    d.forEach((v, i) => {
      expect(v).toBeCloseTo(want[i] ?? Number.NaN, 5)
    })
  })
})

describe('initializersToInputs', () => {
  it('turns the named initializers into graph inputs and leaves the rest', async () => {
    const fx = makeTwinFixture()
    const bytes = initializersToInputs(fx.files['model.onnx'] as Uint8Array, [
      'layer1.weight',
      'layer1.bias',
    ])
    const s = await ort.InferenceSession.create(bytes)
    expect(s.inputNames).toContain('layer1.weight')
    expect(s.inputNames).toContain('layer1.bias')
    expect(s.inputNames).not.toContain('layer2.weight')
    await s.release()
  })
})

describe('linear merges in closed form', () => {
  /** The general path: every named expert's dense θ_s + Δ_t through the merge engine. */
  async function viaEngine(
    factors: readonly FactorsWithShared[],
    spec: MergeSpec,
    experts: { name: string; index: number }[],
  ) {
    const out = new Map<string, Float32Array>()
    for (const f of factors) {
      const thetas: Float32Array[] = []
      for (const e of experts) {
        const d = await expertDelta(f, e.index)
        thetas.push(d.map((x, i) => x + (f.shared[i] ?? 0)))
      }
      out.set(
        f.name,
        await mergeTensor(spec, {
          base: f.shared,
          experts: thetas,
          names: experts.map((e) => e.name),
          shape: shapeOf(f),
          tensorName: f.name,
        }),
      )
    }
    return out
  }

  it('equal the merge engine on the dense tensors (task_arithmetic and linear, normalised or not)', async () => {
    const m = randomFactors(96, 80, [5, 3, 4]) // 96·80·9 MACs: the onnxruntime product too
    m.shared = Float32Array.from({ length: 96 * 80 }, (_, i) => Math.sin(i))
    const vector: FactorsWithShared = {
      kind: 'vector',
      name: 'b',
      size: 6,
      shared: Float32Array.of(1, 2, 3, 4, 5, 6),
      delta: Float32Array.from({ length: 18 }, (_, i) => Math.cos(i)),
    }
    const factors = [m, vector]
    const experts = [
      { name: 'a', index: 0 },
      { name: 'c', index: 2 },
    ]
    const backend = new MatmulBackend({ provider: 'cpu', threads: 1 })
    const never = () => {
      throw new Error('the closed form must not call the merge engine')
    }
    for (const input of [
      {
        method: 'task_arithmetic',
        lambda: 0.7,
        experts: { a: { weight: 0.3 }, c: { weight: 1.2 } },
      },
      {
        method: 'task_arithmetic',
        normalize: true,
        experts: { a: { weight: 0.3 }, c: { weight: 1.2 } },
      },
      { method: 'linear', experts: { a: { weight: 2 }, c: { weight: -0.5 } } },
      { method: 'linear', normalize: false, experts: { a: { weight: 0.25 }, c: {} } },
    ]) {
      const spec = parseMergeSpec(input)
      const want = await viaEngine(factors, spec, experts)
      for (const be of [undefined, backend]) {
        const got = await materializeMerge(factors, spec, experts, never, be)
        for (const [name, w] of want) {
          const g = got.get(name) as Float32Array
          expect(g).toHaveLength(w.length)
          let max = 0
          for (let i = 0; i < w.length; i++)
            max = Math.max(max, Math.abs((g[i] ?? 0) - (w[i] ?? 0)))
          expect(max, `${input.method} ${name}`).toBeLessThan(1e-5)
        }
      }
    }
    await backend.dispose()
  })

  it('leave other methods, and a linear average of weights summing to 0, to the merge engine', () => {
    const experts = [
      { name: 'a', index: 0 },
      { name: 'b', index: 1 },
    ]
    expect(linearForm(parseMergeSpec({ method: 'ties', density: 0.5 }), experts)).toBeUndefined()
    expect(
      linearForm(
        parseMergeSpec({ method: 'linear', experts: { a: { weight: 1 }, b: { weight: -1 } } }),
        experts,
      ),
    ).toBeUndefined()
    expect(
      linearForm(
        parseMergeSpec({ method: 'task_arithmetic', lambda: 2, experts: { a: { weight: 0.5 } } }),
        experts,
      ),
    ).toEqual({
      a: 1,
      c: new Map([
        [0, 1],
        [1, 2],
      ]),
    })
  })
})
