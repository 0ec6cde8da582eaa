import { describe, expect, it } from 'vitest'
import { AppError } from '../errors.ts'
import {
  ExclusiveSpecSchema,
  MERGE_METHOD_NAMES,
  MergeSpecSchema,
  parseMergeSpec,
} from './merge.ts'

describe('MergeSpecSchema', () => {
  const valid: [string, unknown][] = [
    ['linear, defaults', { method: 'linear' }],
    [
      'linear with weights',
      { method: 'linear', experts: { a: { weight: 2 }, b: { weight: -0.5 } } },
    ],
    ['task_arithmetic with lambda', { method: 'task_arithmetic', lambda: 0.3 }],
    ['ties full', { method: 'ties', density: 0.2, majority_sign_method: 'frequency', lambda: 1 }],
    ['ties per-expert density', { method: 'ties', experts: { a: { density: 0.5, weight: 1 } } }],
    ['dare_linear', { method: 'dare_linear', density: 0.1, seed: 42 }],
    ['dare_ties', { method: 'dare_ties', density: 1, rescale: false }],
    ['breadcrumbs', { method: 'breadcrumbs', density: 0.9, gamma: 0.05 }],
    [
      'breadcrumbs_ties per-expert gamma',
      { method: 'breadcrumbs_ties', experts: { a: { gamma: 0 } } },
    ],
    ['della', { method: 'della', density: 0.5, epsilon: 0.2 }],
    ['della density 1 ignores epsilon range', { method: 'della', density: 1, epsilon: 0.49 }],
    ['della_linear', { method: 'della_linear', density: 0.3, epsilon: 0.1 }],
    ['model_stock', { method: 'model_stock', filter_wise: true }],
    ['consensus', { method: 'consensus', k: 3, tall_mask_lambda: 0.4, lambda: 0.3 }],
    ['regmean', { method: 'regmean', alpha: 0.5, experts: { a: { weight: 2 } } }],
    ['regmean alpha 0 and 1', { method: 'regmean', alpha: 1 }],
  ]
  it.each(valid)('accepts %s', (_label, input) => {
    const r = MergeSpecSchema.safeParse(input)
    expect(r.success, JSON.stringify(r.error?.issues)).toBe(true)
  })

  const invalid: [string, unknown, string][] = [
    ['unknown method', { method: 'slerp' }, 'method'],
    ['missing method', { density: 0.5 }, 'method'],
    ['density 0', { method: 'ties', density: 0 }, 'density'],
    ['density > 1', { method: 'dare_linear', density: 1.5 }, 'density'],
    [
      'per-expert density 0',
      { method: 'ties', experts: { a: { density: 0 } } },
      'experts.a.density',
    ],
    [
      'NaN weight',
      { method: 'linear', experts: { a: { weight: Number.NaN } } },
      'experts.a.weight',
    ],
    ['Infinity lambda', { method: 'task_arithmetic', lambda: Number.POSITIVE_INFINITY }, 'lambda'],
    ['typo (strict)', { method: 'ties', desnity: 0.5 }, ''],
    ['per-expert typo', { method: 'ties', experts: { a: { wieght: 1 } } }, 'experts.a'],
    ['bad expert name', { method: 'linear', experts: { 'Bad Name': { weight: 1 } } }, 'experts'],
    ['bad sign method', { method: 'ties', majority_sign_method: 'sum' }, 'majority_sign_method'],
    ['gamma 1', { method: 'breadcrumbs', gamma: 1 }, 'gamma'],
    ['della eps too wide', { method: 'della', density: 0.1, epsilon: 0.15 }, 'epsilon'],
    [
      'della per-expert eps',
      { method: 'della_linear', experts: { a: { density: 0.9, epsilon: 0.2 } } },
      'experts.a',
    ],
    ['negative seed', { method: 'dare_ties', seed: -1 }, 'seed'],
    ['fractional seed', { method: 'dare_ties', seed: 1.5 }, 'seed'],
    ['k 0', { method: 'consensus', k: 0 }, 'k'],
    ['param of another method', { method: 'linear', density: 0.5 }, ''],
    ['model_stock takes no weights', { method: 'model_stock', experts: {} }, ''],
    ['regmean alpha above 1', { method: 'regmean', alpha: 1.5 }, 'alpha'],
    ['regmean negative weight', { method: 'regmean', experts: { a: { weight: -1 } } }, 'experts.a'],
    ['regmean has no lambda', { method: 'regmean', lambda: 0.3 }, ''],
  ]
  it.each(invalid)('rejects %s', (_label, input, path) => {
    const r = MergeSpecSchema.safeParse(input)
    expect(r.success).toBe(false)
    const paths = r.error?.issues.map((i) => i.path.join('.')) ?? []
    if (path)
      expect(
        paths.some((p) => p.startsWith(path)),
        JSON.stringify(paths),
      ).toBe(true)
  })

  it("fills mergekit's defaults", () => {
    expect(MergeSpecSchema.parse({ method: 'ties' })).toEqual({
      method: 'ties',
      lambda: 1,
      normalize: true,
      rescale: false,
      density: 1,
      majority_sign_method: 'total',
      experts: {},
    })
    const della = MergeSpecSchema.parse({ method: 'della' })
    expect(della).toMatchObject({ normalize: true, rescale: true, epsilon: 0.15, seed: 0 })
    expect(MergeSpecSchema.parse({ method: 'dare_linear' })).toMatchObject({
      normalize: false,
      rescale: true,
    })
    expect(MergeSpecSchema.parse({ method: 'breadcrumbs' })).toMatchObject({
      gamma: 0.01,
      normalize: false,
      rescale: false,
    })
    expect(MergeSpecSchema.parse({ method: 'consensus' })).toMatchObject({
      k: 2,
      tall_mask_lambda: 0.6,
    })
    // RegMean's reference code scales the Grams' off-diagonal by 0.9 by default.
    expect(MergeSpecSchema.parse({ method: 'regmean' })).toEqual({
      method: 'regmean',
      alpha: 0.9,
      experts: {},
    })
  })

  it('covers every name in MERGE_METHOD_NAMES', () => {
    for (const method of MERGE_METHOD_NAMES)
      expect(MergeSpecSchema.safeParse({ method }).success, method).toBe(true)
  })
})

describe('parseMergeSpec', () => {
  it('throws INVALID_REQUEST naming the field', () => {
    try {
      parseMergeSpec({ method: 'ties', density: 2 })
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(AppError)
      expect((err as AppError).code).toBe('INVALID_REQUEST')
      expect((err as AppError).message).toMatch(/density/)
    }
  })
  it('names an unknown method', () => {
    expect(() => parseMergeSpec({ method: 'frankenmerge' })).toThrow(/method/)
  })
})

describe('ExclusiveSpecSchema', () => {
  it.each([
    [{ rank: 32 }, true],
    [{ energy: 0.9, include: ['*.weight'], exclude: ['/.*bias.*/'] }, true],
    [{}, true],
    [{ exclude: ['*.bias'] }, true],
    [{ rank: 8, energy: 0.5 }, false],
    [{ energy: 0.5, budget: 0.1 }, false],
    [{ tensors: [{ match: 'fc2.*', rank: 8 }] }, false],
    [{ rank: 0 }, false],
    [{ energy: 0 }, false],
    [{ rank: 4, include: [''] }, false],
    [{ rank: 4, dtype: 'float16' }, true],
    [{ rank: 4, dtype: 'bfloat16' }, false],
    [
      {
        rank: 4,
        tensors: [
          { match: 'fc2.*', rank: 96 },
          { match: '/head/', energy: 1 },
        ],
      },
      true,
    ],
    [{ shared_basis: { rank: 64 }, dtype: 'int8' }, true],
    [{ shared_basis: { budget: 0.1 } }, true],
    [{ shared_basis: { budget: 1.5 } }, false],
    [{ shared_basis: { rank: 0 } }, false],
    [{ shared_basis: { rank: 8, budget: 0.1 } }, false],
    [{ shared_basis: {} }, false],
    [{ rank: 4, tensors: [{ match: 'fc2.*', rank: 8, energy: 0.5 }] }, false],
    [{ rank: 4, tensors: [{ match: 'fc2.*' }] }, false],
    [{ rank: 4, tensors: [{ match: '', rank: 2 }] }, false],
    [{ rank: 4, tensors: [{ match: 'fc2.*', rank: 2, extra: 1 }] }, false],
  ])('%j → %s', (input, ok) => {
    expect(ExclusiveSpecSchema.safeParse(input).success).toBe(ok)
  })
  it('defaults the factor dtype to float32 when a target is stated', () => {
    expect(ExclusiveSpecSchema.parse({ rank: 4 }).dtype).toBe('float32')
    expect(ExclusiveSpecSchema.parse({ budget: 0.2 }).dtype).toBe('float32')
  })
  it('gives a spec without a target the measured default: budget 0.055, int8 (issue #18)', () => {
    expect(ExclusiveSpecSchema.parse({})).toEqual({ budget: 0.055, dtype: 'int8' })
    expect(ExclusiveSpecSchema.parse({ dtype: 'float32' })).toEqual({
      budget: 0.055,
      dtype: 'float32',
    })
  })
})
