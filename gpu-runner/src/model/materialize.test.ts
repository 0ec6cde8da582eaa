import { describe, expect, it } from 'vitest'
import { makeTwinFixture } from '../../../test/fixtures/twin-fixture.ts'
import { MatmulBackend } from '../merge/matmul.ts'
import { onnx } from '../onnx/proto.ts'
import { ort } from '../runtime/ort-session.ts'
import {
  expertDelta,
  initializersToInputs,
  type MatrixFactors,
  readExclusiveFactors,
} from './materialize.ts'

function randomFactors(rows: number, cols: number, perExpert: number[]): MatrixFactors {
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
    shape: [rows, cols],
    shared: new Float32Array(rows * cols),
    u: Float32Array.from({ length: rows * R }, rand),
    v: Float32Array.from({ length: R * cols }, rand),
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
