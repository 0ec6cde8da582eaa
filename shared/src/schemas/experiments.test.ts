import { describe, expect, it } from 'vitest'
import {
  CreateExperimentRequestSchema,
  FeedbackRequestSchema,
  UpdateWeightsRequestSchema,
} from './experiments.ts'

const arms = [
  { name: 'ties', weight: 50, control: true, parameters: { variant: 'ties' } },
  { name: 'twin', weight: 50, parameters: {} },
]

function issues(schema: typeof CreateExperimentRequestSchema, v: unknown): string {
  const r = schema.safeParse(v)
  return r.success ? '' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
}

describe('CreateExperimentRequestSchema', () => {
  it('accepts a two-arm experiment and fills the defaults', () => {
    const e = CreateExperimentRequestSchema.parse({
      name: 'twin vs ties',
      model: 'fashion-twin',
      arms,
    })
    expect(e.unit).toBe('api_key')
    expect(e.mode).toBe('fixed')
    expect(e.statistics).toEqual({ alpha: 0.05, mixture_sd: 0.1, burn_in: 20 })
    expect(e.guardrails).toEqual({ min_samples: 100, window: 1000 })
    expect(e.arms[1]?.control).toBe(false)
  })

  const bad: [string, unknown, RegExp][] = [
    [
      'no control',
      { arms: arms.map((a) => ({ ...a, control: false })) },
      /exactly one arm must be the control/,
    ],
    [
      'two controls',
      { arms: arms.map((a) => ({ ...a, control: true })) },
      /exactly one arm.*2 are/,
    ],
    ['a repeated arm', { arms: [arms[0], { ...arms[1], name: 'ties' }] }, /arm 'ties' twice/],
    ['weights over 100%', { arms: [arms[0], { ...arms[1], weight: 60 }] }, /110%, more than 100%/],
    ['a negative weight', { arms: [arms[0], { ...arms[1], weight: -1 }] }, /arms\.1\.weight/],
    [
      'a misspelt merge control',
      { arms: [arms[0], { ...arms[1], parameters: { topk: 2 } }] },
      /arms\.1\.parameters.*topk/,
    ],
    [
      'a bad merge control value',
      { arms: [arms[0], { ...arms[1], parameters: { top_k: 0 } }] },
      /arms\.1\.parameters\.top_k/,
    ],
    [
      'a fan-out arm (#19)',
      { arms: [arms[0], { ...arms[1], parameters: { fan_out: true } }] },
      /arms\.1\.parameters\.fan_out: an arm cannot fan out/,
    ],
    ['one arm', { arms: [arms[0]] }, /arms/],
    ['an unknown field', { colour: 'red' }, /colour/],
    ['alpha out of range', { statistics: { alpha: 0.7 } }, /statistics\.alpha/],
  ]
  for (const [what, over, message] of bad)
    it(`refuses ${what}, naming it`, () => {
      expect(
        issues(CreateExperimentRequestSchema, { name: 'x', model: 'm', arms, ...(over as object) }),
      ).toMatch(message)
    })
})

describe('FeedbackRequestSchema', () => {
  it('takes a reward or a label (or labels), not both, not neither', () => {
    expect(FeedbackRequestSchema.safeParse({ request_id: 'r-1', reward: 1 }).success).toBe(true)
    expect(FeedbackRequestSchema.safeParse({ request_id: 'r-1', label: 3 }).success).toBe(true)
    expect(FeedbackRequestSchema.safeParse({ request_id: 'r-1', label: ['a', 'b'] }).success).toBe(
      true,
    )
    expect(
      FeedbackRequestSchema.safeParse({ request_id: 'r-1', reward: 1, label: 1 }).success,
    ).toBe(false)
    expect(FeedbackRequestSchema.safeParse({ request_id: 'r-1' }).success).toBe(false)
    expect(FeedbackRequestSchema.safeParse({ request_id: 'r-1', reward: 1.5 }).success).toBe(false)
    expect(FeedbackRequestSchema.safeParse({ request_id: 'has space', reward: 1 }).success).toBe(
      false,
    )
  })
})

describe('UpdateWeightsRequestSchema', () => {
  it('needs at least one arm, weights in percent', () => {
    expect(UpdateWeightsRequestSchema.safeParse({ weights: { twin: 80 } }).success).toBe(true)
    expect(UpdateWeightsRequestSchema.safeParse({ weights: {} }).success).toBe(false)
    expect(UpdateWeightsRequestSchema.safeParse({ weights: { twin: 101 } }).success).toBe(false)
  })
})
