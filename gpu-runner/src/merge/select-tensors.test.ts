import { describe, expect, it } from 'vitest'
import { expectAppError } from '../../test-support/merge-conformance.ts'
import { selectTensors } from './select-tensors.ts'

const names = [
  'encoder.layer.0.attention.query.weight',
  'encoder.layer.0.attention.query.bias',
  'encoder.layer.0.output.LayerNorm.weight',
  'encoder.layer.1.attention.query.weight',
  'classifier.dense.weight',
  'classifier.dense.bias',
]

describe('selectTensors', () => {
  it('selects everything when given no patterns', () => {
    expect(selectTensors(names, {})).toEqual(names)
  })

  it('globs match the whole name; * crosses dots', () => {
    expect(selectTensors(names, { include: ['encoder.*.query.weight'] })).toEqual([
      'encoder.layer.0.attention.query.weight',
      'encoder.layer.1.attention.query.weight',
    ])
    expect(selectTensors(names, { include: ['classifier.dense.?eight'] })).toEqual([
      'classifier.dense.weight',
    ])
  })

  it("excludes with Twin-Merging's regexes, keeping the original order", () => {
    expect(selectTensors(names, { exclude: ['/.*classifier.*/', '/.*bias.*/'] })).toEqual([
      'encoder.layer.0.attention.query.weight',
      'encoder.layer.0.output.LayerNorm.weight',
      'encoder.layer.1.attention.query.weight',
    ])
  })

  it('regexes are unanchored and take flags', () => {
    expect(selectTensors(names, { include: ['/layernorm/i'] })).toEqual([
      'encoder.layer.0.output.LayerNorm.weight',
    ])
    // the g flag must not make matching stateful
    expect(selectTensors(names, { include: ['/weight$/g'] })).toHaveLength(4)
  })

  it('a pattern that matches nothing is an error naming it', () => {
    expectAppError(
      () => selectTensors(names, { include: ['decoder.*'] }),
      'INVALID_REQUEST',
      /decoder\.\*/,
    )
    expectAppError(
      () => selectTensors(names, { exclude: ['/pooler/'] }),
      'INVALID_REQUEST',
      /pooler/,
    )
  })

  it('an invalid regex or an empty pattern is an INVALID_REQUEST', () => {
    expectAppError(() => selectTensors(names, { include: ['/([a-/'] }), 'INVALID_REQUEST', /regex/)
    expectAppError(() => selectTensors(names, { exclude: [''] }), 'INVALID_REQUEST', /empty/)
  })

  it('glob metacharacters other than * and ? are literal', () => {
    expect(() => selectTensors(['a+b'], { include: ['a+b'] })).not.toThrow()
    expectAppError(() => selectTensors(['aab'], { include: ['a+b'] }), 'INVALID_REQUEST')
  })
})
