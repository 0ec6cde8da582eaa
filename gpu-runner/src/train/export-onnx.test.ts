import { describe, expect, it } from 'vitest'
import { blobs } from '../../test-support/train-helpers.ts'
import { onnx, toNumber } from '../onnx/proto.ts'
import { openSession, ort } from '../runtime/ort-session.ts'
import { exportMlpOnnx } from './export-onnx.ts'
import { initMlp } from './mlp.ts'
import { MlpSessions } from './mlp-sessions.ts'
import { trainMlp } from './train-mlp.ts'

function structure(bytes: Uint8Array) {
  const m = onnx.ModelProto.decode(bytes)
  const g = m.graph
  return {
    nodes: (g?.node ?? []).map((n) => [
      n.name,
      n.opType,
      (n.input ?? []).join(),
      (n.output ?? []).join(),
    ]),
    initializers: (g?.initializer ?? []).map((t) => [
      t.name,
      (t.dims ?? []).map(toNumber).join('x'),
      t.dataType,
    ]),
    inputs: (g?.input ?? []).map((i) => i.name),
    outputs: (g?.output ?? []).map((o) => o.name),
  }
}

describe('exportMlpOnnx', () => {
  it("loads in onnxruntime and reproduces the trainer's predictions", async () => {
    const sizes = [6, 12, 8, 5]
    const { x, y } = blobs(5, 6, 20, 3)
    const { weights } = await trainMlp({
      layers: sizes,
      x,
      y,
      epochs: 3,
      lr: 0.01,
      batchSize: 10,
      seed: 1,
    })
    const bytes = exportMlpOnnx(weights, { inputName: 'pixels', outputName: 'logits' })
    const { session } = await openSession(bytes, { provider: 'cpu' })
    expect(session.inputNames).toEqual(['pixels'])
    expect(session.outputNames).toEqual(['logits'])
    const out = await session.run({ pixels: new ort.Tensor('float32', x, [100, 6]) })
    const exported = out.logits?.data as Float32Array
    const s = await MlpSessions.open(sizes)
    try {
      const trainer = await s.logits(weights, x)
      expect(exported.length).toBe(trainer.length)
      for (let k = 0; k < trainer.length; k++)
        expect(Math.abs((exported[k] as number) - (trainer[k] as number))).toBeLessThan(1e-5)
    } finally {
      await s.release()
      await session.release()
    }
  })

  it('gives identical graphs for different weights, with metadata, and identical bytes for identical input', () => {
    const a = initMlp([784, 32, 10], 1)
    const b = initMlp([784, 32, 10], 2)
    const opts = {
      inputName: 'pixels',
      outputName: 'logits',
      metadata: { task: 'x', classes: '[]' },
    }
    const ba = exportMlpOnnx(a, opts)
    const bb = exportMlpOnnx(b, { ...opts, metadata: { classes: '[]', task: 'y' } })
    expect(structure(ba)).toEqual(structure(bb))
    expect(structure(ba).initializers).toEqual([
      ['fc1.weight', '784x32', 1],
      ['fc1.bias', '32', 1],
      ['fc2.weight', '32x10', 1],
      ['fc2.bias', '10', 1],
    ])
    const meta = onnx.ModelProto.decode(bb).metadataProps.map((p) => [p.key, p.value])
    expect(meta).toEqual([
      ['classes', '[]'],
      ['task', 'y'],
    ])
    expect(Buffer.from(exportMlpOnnx(a, opts)).equals(Buffer.from(ba))).toBe(true)
    expect(Buffer.from(ba).equals(Buffer.from(bb))).toBe(false)
  })

  it('refuses non-finite weights', () => {
    const w = initMlp([3, 2], 1)
    ;(w.layers[0] as { weight: Float32Array }).weight[4] = Number.POSITIVE_INFINITY
    expect(() => exportMlpOnnx(w)).toThrow(/fc1.weight\[4\] is Infinity/)
  })
})
