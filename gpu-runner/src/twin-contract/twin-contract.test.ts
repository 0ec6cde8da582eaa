import { type PackageManifest, TWIN_INPUTS } from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import { checkContract } from './check-contract.ts'
import { controlsOf, encodeControls, TWIN_INPUT_KEYS } from './encode-controls.ts'

describe('encodeControls', () => {
  it('encodes each control from the spec: [batch, T] or [batch, 1], absent values filled in', () => {
    const feeds = encodeControls(
      [{ mixWeights: [0.25, 0.75, 0] }, { useRouter: 1, topK: 2 }, {}],
      3,
    )
    expect(Object.keys(feeds).sort()).toEqual(
      TWIN_INPUT_KEYS.map((k) => TWIN_INPUTS[k].name).sort(),
    )
    const mix = feeds[TWIN_INPUTS.mixWeights.name]
    expect(mix?.type).toBe('float32')
    expect(mix?.dims).toEqual([3, 3])
    expect(Array.from(mix?.data as Float32Array)).toEqual([0.25, 0.75, 0, 0, 0, 0, 0, 0, 0])
    expect(Array.from(feeds[TWIN_INPUTS.useRouter.name]?.data as Float32Array)).toEqual([0, 1, 0])
    expect(Array.from(feeds[TWIN_INPUTS.expertMask.name]?.data as Float32Array)).toEqual(
      new Array(9).fill(1),
    )
    const topK = feeds[TWIN_INPUTS.topK.name]
    expect(topK?.type).toBe('int64')
    expect(topK?.dims).toEqual([3, 1])
    // absent: 'T', the number of experts (dense)
    expect(Array.from(topK?.data as BigInt64Array)).toEqual([3n, 2n, 3n])
  })

  it('encodes only the controls asked for, e.g. those an older package has', () => {
    const feeds = encodeControls([{}], 4, ['mixWeights', 'topK'])
    expect(Object.keys(feeds).sort()).toEqual(['mix_weights', 'top_k'])
    expect(controlsOf(['x', 'mix_weights', 'top_k'])).toEqual(['mixWeights', 'topK'])
  })

  it('refuses a per-expert value of the wrong width (an internal mistake, not the caller’s)', () => {
    expect(() => encodeControls([{ mixWeights: [1, 0] }], 3)).toThrow(
      /mix_weights.*2 values, not 3/,
    )
  })
})

describe('checkContract', () => {
  const manifest = {
    name: 'm',
    experts: [
      { name: 'a', index: 0 },
      { name: 'b', index: 1 },
    ],
    inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }],
    outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }],
  } as unknown as PackageManifest
  const required = TWIN_INPUT_KEYS.filter((k) => !TWIN_INPUTS[k].optional)
  const optional = TWIN_INPUT_KEYS.filter((k) => TWIN_INPUTS[k].optional)
  const meta = (keys: readonly (typeof TWIN_INPUT_KEYS)[number][]) =>
    keys.map((k) => {
      const spec = TWIN_INPUTS[k]
      return {
        name: spec.name,
        isTensor: true as const,
        type: spec.dtype,
        shape: ['batch', spec.dims[1] === 'T' ? 2 : 1],
      }
    })
  const session = (keys: readonly (typeof TWIN_INPUT_KEYS)[number][]) => ({
    inputNames: ['x', ...keys.map((k) => TWIN_INPUTS[k].name)],
    outputNames: ['y', 'expert_weights'],
    inputMetadata: meta(keys),
  })

  it('accepts every control, or the required ones only (a package built before the optional ones)', () => {
    expect(checkContract(manifest, session(TWIN_INPUT_KEYS), new Map())).toEqual([
      ...required,
      ...optional,
    ])
    expect(checkContract(manifest, session(required), new Map())).toEqual(required)
  })

  it('refuses a missing required control, a wrong type or width, and variants that differ', () => {
    expect(() => checkContract(manifest, session(required.slice(1)), new Map())).toThrow(
      /twin graph’s inputs has \[x, .*\], the manifest and twin-graph contract say \[x, mix_weights/,
    )
    const wrong = session(required)
    wrong.inputMetadata = wrong.inputMetadata.map((m) =>
      m.name === 'top_k' ? { ...m, type: 'float32' } : m,
    )
    expect(() => checkContract(manifest, wrong, new Map())).toThrow(
      /input 'top_k' is float32 \[batch, 1\], the contract says int64 \[batch, 1\]/,
    )
    const narrow = session(required)
    narrow.inputMetadata = narrow.inputMetadata.map((m) =>
      m.name === 'mix_weights' ? { ...m, shape: ['batch', 3] } : m,
    )
    expect(() => checkContract(manifest, narrow, new Map())).toThrow(/says float32 \[batch, 2\]/)
    const variant = { inputNames: ['x', 'mix_weights'], outputNames: ['y'] }
    expect(() => checkContract(manifest, session(required), new Map([['v', variant]]))).toThrow(
      /variant 'v'’s inputs has \[x, mix_weights\]/,
    )
  })
})
