import { describe, expect, it } from 'vitest'
import { openSession, ort } from '../runtime/ort-session.ts'
import { GraphBuilder } from './graph-builder.ts'

describe('GraphBuilder + onnxruntime', () => {
  it('builds an MLP layer in memory and runs it (CPU), matching a JS reference', async () => {
    const dIn = 8
    const dOut = 3
    const W = Float32Array.from({ length: dIn * dOut }, (_, i) => Math.sin(i) / 4) // [dIn, dOut]
    const B = Float32Array.from({ length: dOut }, (_, i) => i - 1) // [dOut]
    const g = new GraphBuilder('layer')
      .input('X', 'float', ['batch', dIn])
      .float('W', W, [dIn, dOut])
      .float('B', B, [dOut])
    const mm = g.node('MatMul', ['X', 'W'])
    const add = g.node('Add', [mm, 'B'])
    g.node('Relu', [add], { outputs: ['Y'] })
    g.output('Y', 'float', ['batch', dOut])
    const { session, provider } = await openSession(g.build(), { provider: 'cpu' })
    expect(provider).toBe('cpu')

    const X = Float32Array.from({ length: 2 * dIn }, (_, i) => (i % 5) - 2) // [2, dIn]
    const out = await session.run({ X: new ort.Tensor('float32', X, [2, dIn]) })
    const Y = out.Y?.data as Float32Array
    expect(out.Y?.dims).toEqual([2, dOut])
    for (let b = 0; b < 2; b++)
      for (let j = 0; j < dOut; j++) {
        let s = B[j] as number
        for (let k = 0; k < dIn; k++) s += (X[b * dIn + k] as number) * (W[k * dOut + j] as number)
        expect(Y[b * dOut + j]).toBeCloseTo(Math.max(0, s), 5)
      }
  })

  it('falls back to CPU when CUDA cannot load, and says why', async () => {
    const g = new GraphBuilder('id').input('X', 'float', [1])
    g.node('Identity', ['X'], { outputs: ['Y'] })
    g.output('Y', 'float', [1])
    const opened = await openSession(g.build(), { provider: 'auto' })
    // On a machine with the CUDA provider installed this is 'cuda'; the npm build here is CPU-only.
    if (opened.provider === 'cpu') expect(opened.fallbackReason).toBeTruthy()
    const out = await opened.session.run({ X: new ort.Tensor('float32', Float32Array.of(7), [1]) })
    expect(Array.from(out.Y?.data as Float32Array)).toEqual([7])
  })
})
