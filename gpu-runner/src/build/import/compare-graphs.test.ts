import { describe, expect, it } from 'vitest'
import {
  mlpModel,
  perturbedParams,
  randomParams,
  transformerModel,
} from '../../../test-support/test-models.ts'
import { GraphBuilder } from '../../onnx/graph-builder.ts'
import { type ModelProto, onnx } from '../../onnx/proto.ts'
import { assertSameGraph, firstGraphDifference } from './compare-graphs.ts'
import { readOnnxBytes } from './read-onnx.ts'

const base = readOnnxBytes(mlpModel(randomParams(1)), 'base.onnx')

/** The MLP with one edit applied to its decoded model. */
function edited(edit: (m: ModelProto) => void) {
  const m = onnx.ModelProto.decode(mlpModel(perturbedParams(randomParams(1), 2)))
  edit(m)
  return readOnnxBytes(onnx.ModelProto.encode(m).finish(), 'expert.onnx')
}

describe('firstGraphDifference', () => {
  it('accepts a fine-tuned expert: same graph, different float values', () => {
    expect(
      firstGraphDifference(
        base,
        edited(() => {}),
      ),
    ).toBeNull()
  })

  it.each([
    [
      'another architecture',
      () => readOnnxBytes(transformerModel(randomParams(1)), 'x'),
      /graph input 0: x \(type 1, \[batch,8\]\) vs x \(type 1, \[batch,seq,6\]\)/,
    ],
    [
      'a renamed node',
      () =>
        edited((m) => {
          const n = m.graph?.node?.[1]
          if (n) n.name = 'other'
        }),
      /node 1: name 'fc1' vs 'other'/,
    ],
    [
      'a changed op type',
      () =>
        edited((m) => {
          const n = m.graph?.node?.[2]
          if (n) n.opType = 'Sigmoid'
        }),
      /node 2 \('relu1'\): op type Relu vs Sigmoid/,
    ],
    [
      'a changed attribute (transB)',
      () =>
        edited((m) => {
          const a = m.graph?.node?.[6]?.attribute?.find((x) => x.name === 'transB')
          if (a) a.i = 0
        }),
      /node 6 \('head'\): attribute 'transB' differs/,
    ],
    [
      'rewired inputs',
      () =>
        edited((m) => {
          const n = m.graph?.node?.[3]
          if (n?.input) n.input[1] = 'fc1.weight'
        }),
      /node 3 \('fc2'\): inputs \[.*fc2.weight\] vs \[.*fc1.weight\]/,
    ],
    [
      'a missing initializer',
      () =>
        edited((m) => {
          if (m.graph)
            m.graph.initializer = m.graph.initializer?.filter((t) => t.name !== 'fc2.bias') ?? []
        }),
      /initializer 'fc2.bias' is missing in the expert/,
    ],
    [
      'a resized initializer',
      () =>
        edited((m) => {
          const t = m.graph?.initializer?.find((x) => x.name === 'fc2.bias')
          if (t) {
            t.dims = [6, 2]
          }
        }),
      /initializer 'fc2.bias': shape \[12\] vs \[6,2\]/,
    ],
    [
      'an extra node',
      () =>
        edited((m) => {
          m.graph?.node?.push({
            name: 'extra',
            opType: 'Identity',
            input: ['logits'],
            output: ['y2'],
          })
        }),
      /7 nodes vs 8 \(first extra: 'extra'\)/,
    ],
  ])('names the first difference: %s', (_label, make, message) => {
    expect(firstGraphDifference(base, make())).toMatch(message)
  })

  it('compares non-float initializers by value (a Reshape shape is structure, not a weight)', () => {
    const build = (shape: number[]) => {
      const g = new GraphBuilder('r')
        .input('x', 'float', ['b', 4])
        .output('y', 'float', ['b', 2, 2])
        .int64('shape', shape)
      g.node('Reshape', ['x', 'shape'], { outputs: ['y'] })
      return readOnnxBytes(g.build(), 'm')
    }
    expect(firstGraphDifference(build([-1, 2, 2]), build([-1, 2, 2]))).toBeNull()
    expect(firstGraphDifference(build([-1, 2, 2]), build([-1, 4, 1]))).toMatch(
      /initializer 'shape' \(non-float, e.g. a shape\) has different values/,
    )
  })

  it('assertSameGraph throws INCOMPATIBLE_EXPERTS naming the expert and both files', () => {
    const other = edited((m) => {
      const n = m.graph?.node?.[2]
      if (n) n.opType = 'Tanh'
    })
    expect(() => assertSameGraph(base, other, 'rotated')).toThrow(
      expect.objectContaining({
        code: 'INCOMPATIBLE_EXPERTS',
        message: expect.stringMatching(
          /^expert 'rotated' \(expert.onnx\) does not have the base model's graph \(base.onnx\): node 2/,
        ),
      }),
    )
  })
})
