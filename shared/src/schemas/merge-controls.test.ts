import { describe, expect, it } from 'vitest'
import { AppError } from '../errors.ts'
import { MERGE_PARAMETER_KEYS, MergeControlsSchema, parseMergeControls } from './merge-controls.ts'

describe('MergeControlsSchema', () => {
  const valid: [string, Record<string, unknown>][] = [
    ['no parameters', {}],
    ['top_k', { top_k: 2 }],
    ['exclude_experts', { exclude_experts: ['medical', 'legal'] }],
    ['top_k with exclude', { top_k: 1, exclude_experts: ['legal'] }],
    ['abstain_below', { abstain_below: 0.6 }],
    ['abstain_below at its bounds, with top_k', { abstain_below: 1, top_k: 1 }],
    ['abstain_below 0 (never)', { abstain_below: 0 }],
    ['explicit mix', { experts: { math: 0.7, code: 0.3 } }],
    ['negative weight (task negation)', { experts: { toxic: -0.5 } }],
    ['variant', { variant: 'shared' }],
    ['ties merge', { experts: { a: 1, b: 1 }, merge_method: 'ties', density: 0.5 }],
    [
      'dare_ties with sign method and seed',
      {
        experts: { a: 0.5, b: 0.5 },
        merge_method: 'dare_ties',
        majority_sign_method: 'frequency',
        seed: 3,
      },
    ],
    ['model_stock ignores weights', { experts: { a: 1, b: 1 }, merge_method: 'model_stock' }],
  ]
  for (const [name, params] of valid)
    it(`accepts ${name}`, () => {
      expect(MergeControlsSchema.safeParse(params).success).toBe(true)
    })

  const invalid: [string, Record<string, unknown>, RegExp][] = [
    ['a misspelt key', { topk: 2 }, /unknown merge control 'topk'/],
    ['top_k 0', { top_k: 0 }, /parameters\.top_k: must be at least 1/],
    ['top_k fractional', { top_k: 1.5 }, /parameters\.top_k: must be a whole number/],
    ['top_k as a string', { top_k: '2' }, /parameters\.top_k/],
    ['an empty mix', { experts: {} }, /at least one expert/],
    ['a non-numeric weight', { experts: { a: 'high' } }, /parameters\.experts\.a/],
    // Issue #16, case 1: these overflowed float32 and answered null in every output.
    ['a weight of 1e39', { experts: { original: 1e39 } }, /experts\.original: must be at most 100/],
    [
      'weights of ±1e30',
      { experts: { original: 1e30, inverted: -1e30 } },
      /experts\.original: must be at most 100.*experts\.inverted: must be at least -100/,
    ],
    [
      'lambda 1e38 with ties',
      { experts: { a: 1 }, merge_method: 'ties', lambda: 1e38 },
      /parameters\.lambda: must be at most 100/,
    ],
    [
      'tall_mask_lambda 1e9',
      { experts: { a: 1, b: 1 }, merge_method: 'consensus', tall_mask_lambda: 1e9 },
      /tall_mask_lambda/,
    ],
    ['an invalid expert name', { experts: { 'Bad Name': 1 } }, /parameters\.experts/],
    ['a duplicate exclusion', { exclude_experts: ['a', 'a'] }, /twice/],
    ['variant with experts', { variant: 'shared', experts: { a: 1 } }, /combined with variant/],
    [
      'experts with top_k',
      { experts: { a: 1 }, top_k: 1 },
      /parameters\.top_k: applies to the router/,
    ],
    ['abstain_below above 1', { abstain_below: 1.5 }, /abstain_below: must be between 0 and 1/],
    ['abstain_below negative', { abstain_below: -0.1 }, /abstain_below: must be between 0 and 1/],
    ['abstain_below as a string', { abstain_below: '0.5' }, /abstain_below: must be a number/],
    [
      'experts with abstain_below',
      { experts: { a: 1 }, abstain_below: 0.5 },
      /parameters\.abstain_below: applies to the router/,
    ],
    [
      'variant with abstain_below',
      { variant: 'shared', abstain_below: 0.5 },
      /abstain_below: cannot be combined with variant/,
    ],
    ['merge_method without experts', { merge_method: 'ties' }, /needs experts/],
    [
      "regmean per request (it needs the builder's Gram matrices)",
      { experts: { a: 1, b: 1 }, merge_method: 'regmean' },
      /parameters\.merge_method: 'regmean' needs the Gram matrices.*twinserve build/,
    ],
    [
      'an unknown merge_method',
      { experts: { a: 1 }, merge_method: 'magic' },
      /unknown merge_method "magic"/,
    ],
    ['density without merge_method', { experts: { a: 1 }, density: 0.5 }, /needs merge_method/],
    ['density out of range', { experts: { a: 1 }, merge_method: 'ties', density: 1.5 }, /density/],
    [
      'a parameter of another method',
      { experts: { a: 1 }, merge_method: 'ties', gamma: 0.1 },
      /gamma: is not a parameter of merge_method 'ties'/,
    ],
  ]
  for (const [name, params, message] of invalid)
    it(`refuses ${name} with a clear message`, () => {
      expect(MergeControlsSchema.safeParse(params).success).toBe(false)
      let err: unknown
      try {
        parseMergeControls(params)
      } catch (e) {
        err = e
      }
      expect(err).toBeInstanceOf(AppError)
      expect((err as AppError).code).toBe('INVALID_REQUEST')
      expect((err as AppError).message).toMatch(message)
    })

  it('knows the merge parameters of merge.ts', () => {
    for (const k of ['density', 'lambda', 'majority_sign_method', 'seed', 'gamma', 'epsilon'])
      expect(MERGE_PARAMETER_KEYS).toContain(k)
  })
})

describe('parseMergeControls', () => {
  it('picks the path', () => {
    expect(parseMergeControls(undefined)).toEqual({ kind: 'router', exclude: [] })
    expect(parseMergeControls({ top_k: 2, exclude_experts: ['b'] })).toEqual({
      kind: 'router',
      topK: 2,
      exclude: ['b'],
    })
    expect(parseMergeControls({ abstain_below: 0.7 })).toEqual({
      kind: 'router',
      exclude: [],
      abstainBelow: 0.7,
    })
    expect(parseMergeControls({ experts: { a: 0.25 } })).toEqual({
      kind: 'explicit',
      experts: { a: 0.25 },
    })
    expect(parseMergeControls({ variant: 'ties' })).toEqual({ kind: 'variant', variant: 'ties' })
    const m = parseMergeControls({ experts: { a: 1, b: 2 }, merge_method: 'ties', density: 0.4 })
    expect(m.kind).toBe('materialized')
    if (m.kind !== 'materialized') return
    expect(m.spec).toMatchObject({
      method: 'ties',
      density: 0.4,
      experts: { a: { weight: 1 }, b: { weight: 2 } },
    })
  })
})

// Issue #16, case 8: varying density by 1e-9 per request forced a fresh merge every time.
describe('merge parameters snap to a grid', () => {
  const spec = (density: number, weight: number) => {
    const m = parseMergeControls({ experts: { a: weight, b: 1 }, merge_method: 'ties', density })
    if (m.kind !== 'materialized') throw new Error('not materialised')
    return m
  }
  it('recipes that differ below the grid are the same recipe', () => {
    const a = spec(0.5, 0.7)
    const b = spec(0.5 + 1e-9, 0.7 - 3e-7)
    expect(b.spec).toEqual(a.spec)
    expect(b.experts).toEqual(a.experts)
    expect(a.spec).toMatchObject({ density: 0.5, experts: { a: { weight: 0.7 } } })
    expect(spec(0.5004, 1).spec).toMatchObject({ density: 0.5 })
    expect(spec(0.5006, 1).spec).toMatchObject({ density: 0.501 })
  })
  it('a density below the grid stays positive', () => {
    expect(spec(1e-9, 1).spec).toMatchObject({ density: 0.001 })
  })
  it('a recipe that rounding makes invalid is refused, naming the grid', () => {
    expect(() =>
      parseMergeControls({
        experts: { a: 1, b: 1 },
        merge_method: 'della',
        density: 0.5,
        epsilon: 0.4999,
      }),
    ).toThrow(/rounded to multiples of 0\.001: .*density ± epsilon must lie in \(0, 1\)/)
  })
})
