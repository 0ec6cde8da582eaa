import { describe, expect, it } from 'vitest'
import { InferenceResponseSchema } from '../schemas/inference.ts'
import { isInferenceResponse } from './fast-infer-response.ts'

/** A runner's answer as the demo package gives it (classification off), plus the optional fields. */
const VALID = {
  model_name: 'fashion-twin',
  model_version: '1',
  id: 'r-1',
  parameters: { expert_weights: [0.5, 0.5], top_k: 2, routed: { a: 1, b: 'x' }, sampled: true },
  outputs: [
    { name: 'logits', shape: [1, 3], datatype: 'FP32', data: [0.1, -2, 3e5] },
    { name: 'label', shape: [1], datatype: 'BYTES', data: ['0.9:3:Dress'] },
    { name: 'mask', shape: [1, 2], datatype: 'BOOL', data: [true, false] },
    { name: 'raw', shape: [2], datatype: 'FP16', parameters: { binary_data_size: 4 } },
  ],
}

/** A small seeded generator, so that a failing case can be replayed. */
function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

const ODD_VALUES: unknown[] = [
  null,
  undefined,
  0,
  -1,
  1.5,
  2 ** 60,
  '',
  'x',
  true,
  [],
  [1, 'a'],
  [null],
  [[1]],
  {},
  { a: 1 },
  { a: null },
  { a: [1] },
  'FP32',
  'FP33',
]

/** Paths into VALID where a mutation lands (every field the schema looks at). */
const PATHS: (string | number)[][] = [
  [],
  ['model_name'],
  ['model_version'],
  ['id'],
  ['parameters'],
  ['parameters', 'expert_weights'],
  ['parameters', 'expert_weights', 0],
  ['parameters', 'routed'],
  ['parameters', 'routed', 'a'],
  ['outputs'],
  ['outputs', 0],
  ['outputs', 0, 'name'],
  ['outputs', 0, 'shape'],
  ['outputs', 0, 'shape', 1],
  ['outputs', 0, 'datatype'],
  ['outputs', 0, 'data'],
  ['outputs', 0, 'data', 2],
  ['outputs', 0, 'parameters'],
  ['outputs', 3, 'parameters'],
  ['outputs', 3, 'parameters', 'binary_data_size'],
  ['outputs', 3, 'data'],
  ['outputs', 1, 'extra'],
  ['extra'],
]

function mutate(
  body: unknown,
  path: (string | number)[],
  value: unknown,
  remove: boolean,
): unknown {
  const copy = structuredClone(body) as Record<string | number, unknown>
  if (path.length === 0) return value
  let at: Record<string | number, unknown> = copy
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>
  const last = path.at(-1) as string | number
  if (remove) delete at[last]
  else at[last] = value
  return copy
}

describe('isInferenceResponse agrees with InferenceResponseSchema', () => {
  it('accepts the valid answer, and the schema does too', () => {
    expect(InferenceResponseSchema.safeParse(VALID).success).toBe(true)
    expect(isInferenceResponse(VALID)).toBe(true)
    expect(isInferenceResponse({ model_name: 'm', outputs: [] })).toBe(true)
  })

  it('gives the schema verdict on every single and double mutation of it', () => {
    const cases: unknown[] = []
    for (const path of PATHS) {
      cases.push(mutate(VALID, path, undefined, true))
      for (const value of ODD_VALUES) cases.push(mutate(VALID, path, value, false))
    }
    // Two mutations at once, at random (seeded): broken in one place and fixed or broken in another.
    const random = rng(17)
    const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)] as T
    for (let i = 0; i < 3000; i++) {
      const once = mutate(VALID, pick(PATHS), pick(ODD_VALUES), random() < 0.2)
      try {
        cases.push(mutate(once, pick(PATHS), pick(ODD_VALUES), random() < 0.2))
      } catch {
        // The first mutation removed what the second path walks through.
      }
    }
    let accepted = 0
    for (const body of cases) {
      const verdict = InferenceResponseSchema.safeParse(body).success
      // Never yes where the schema says no; and the same answer everywhere (so the hot path rarely needs zod).
      expect({ body, fast: isInferenceResponse(body) }).toEqual({ body, fast: verdict })
      if (verdict) accepted++
    }
    // Both kinds were exercised.
    expect(accepted).toBeGreaterThan(100)
    expect(cases.length - accepted).toBeGreaterThan(100)
  })

  it('answers bodies that are not objects', () => {
    for (const body of [null, 1, 'x', [], [VALID], true])
      expect(isInferenceResponse(body)).toBe(InferenceResponseSchema.safeParse(body).success)
  })
})
