/**
 * dedupeInitializers on a small built graph, run by onnxruntime before and after: equal tables get one name,
 * different ones (values or dims) and overridable inputs keep theirs, and the outputs are the same.
 */
import { describe, expect, it } from 'vitest'
import { openSession, ort } from '../runtime/ort-session.ts'
import { dedupeInitializers } from './dedupe-initializers.ts'
import { GraphBuilder } from './graph-builder.ts'
import { onnx } from './proto.ts'

function model(): Uint8Array {
  const W = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i))
  const g = new GraphBuilder('twins')
    .input('X', 'float', ['batch', 4])
    .float('W1', W, [4, 3])
    .float('W2', W, [4, 3]) // equal to W1
    .float(
      'W3',
      W.map((x) => x + 1),
      [4, 3],
    ) // different values
    .float('W4', W, [3, 4]) // same bytes, other dims
    .int64('idx_a', [2, 0])
    .int64('idx_b', [2, 0]) // equal to idx_a
  const a = g.node('MatMul', ['X', 'W1'])
  const b = g.node('MatMul', ['X', 'W2'])
  const c = g.node('MatMul', ['X', 'W3'])
  const t = g.node('MatMul', ['X', g.node('Transpose', ['W4'], { attrs: { perm: [1, 0] } })])
  const ga = g.node('Gather', [a, 'idx_a'], { attrs: { axis: 1 } })
  const gb = g.node('Gather', [b, 'idx_b'], { attrs: { axis: 1 } })
  g.node('Add', [ga, gb], { outputs: ['Y'] })
  g.node('Add', [c, t], { outputs: ['Z'] })
  g.output('Y', 'float', ['batch', 2]).output('Z', 'float', ['batch', 3])
  return g.build()
}

describe('dedupeInitializers', () => {
  it('gives equal initializers one name and leaves the outputs as they were', async () => {
    const bytes = model()
    const decoded = onnx.ModelProto.decode(bytes)
    const graph = decoded.graph ?? {}
    expect(dedupeInitializers(graph)).toBe(2)
    expect((graph.initializer ?? []).map((t) => t.name).sort()).toEqual(['W1', 'W3', 'W4', 'idx_a'])
    const inputs = (graph.node ?? []).flatMap((n) => n.input ?? [])
    expect(inputs).not.toContain('W2')
    expect(inputs).not.toContain('idx_b')
    // Nothing left to merge.
    expect(dedupeInitializers(graph)).toBe(0)

    const X = new ort.Tensor(
      'float32',
      Float32Array.from({ length: 8 }, (_, i) => i - 3),
      [2, 4],
    )
    const before = await (await openSession(bytes, { provider: 'cpu' })).session.run({ X })
    const after = await (
      await openSession(onnx.ModelProto.encode(decoded).finish(), { provider: 'cpu' })
    ).session.run({ X })
    expect(after.Y?.data).toEqual(before.Y?.data)
    expect(after.Z?.data).toEqual(before.Z?.data)
  })

  it('leaves an initializer that is also a graph input (a feed may override it) alone', () => {
    const decoded = onnx.ModelProto.decode(model())
    const graph = decoded.graph ?? {}
    graph.input = [...(graph.input ?? []), { name: 'W2' }]
    expect(dedupeInitializers(graph)).toBe(1)
    expect((graph.initializer ?? []).map((t) => t.name)).toContain('W2')
  })
})
