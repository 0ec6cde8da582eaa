import { describe, expect, it } from 'vitest'
import { InferenceRequestSchema } from '../schemas/inference.ts'
import { isJsonInferenceRequest } from './fast-infer-request.ts'

/** A request with every optional field the schema knows. */
const VALID = {
  id: 'r-1',
  model_name: 'fashion-twin',
  model_version: '1',
  parameters: {
    top_k: 2,
    exclude_experts: ['a'],
    experts: { a: 0.5, b: 0.5 },
    binary_data_output: false,
  },
  inputs: [
    { name: 'pixels', shape: [1, 4], datatype: 'FP32', data: [0, 0.5, -1, 3e5] },
    {
      name: 'nested',
      shape: [2, 2],
      datatype: 'INT8',
      data: [
        [1, -2],
        [3, 127],
      ],
    },
    {
      name: 'text',
      shape: [1],
      datatype: 'BYTES',
      data: ['hi'],
      parameters: { content_type: 'str' },
    },
    { name: 'mask', shape: [2], datatype: 'BOOL', data: [true, false] },
  ],
  outputs: [
    { name: 'logits', parameters: { classification: 3, binary_data: false } },
    { name: 'w' },
  ],
}

function rng(seed: number) {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

const ODD_VALUES: unknown[] = [
  null,
  0,
  -1,
  1.5,
  300,
  2 ** 60,
  1e39,
  '',
  'x'.repeat(300),
  true,
  [],
  [1, 'a'],
  [[1, 2]],
  [1, 2, 3, 4, 5, 6, 7, 8, 9],
  {},
  { a: 1 },
  { content_type: 'np' },
  { binary_data_size: 16 },
  { classification: 0 },
  { classification: 5 },
  { binary_data: true },
  'FP32',
  'UINT8',
  'BYTES',
]

const PATHS: (string | number)[][] = [
  [],
  ['id'],
  ['model_name'],
  ['model_version'],
  ['parameters'],
  ['parameters', 'top_k'],
  ['parameters', 'experts'],
  ['parameters', 'experts', 'a'],
  ['inputs'],
  ['inputs', 0],
  ['inputs', 0, 'name'],
  ['inputs', 0, 'shape'],
  ['inputs', 0, 'shape', 1],
  ['inputs', 0, 'datatype'],
  ['inputs', 0, 'data'],
  ['inputs', 0, 'data', 3],
  ['inputs', 0, 'parameters'],
  ['inputs', 1, 'data', 1],
  ['inputs', 1, 'data', 1, 1],
  ['inputs', 2, 'parameters', 'content_type'],
  ['inputs', 2, 'data', 0],
  ['inputs', 3, 'data', 0],
  ['inputs', 0, 'extra'],
  ['outputs'],
  ['outputs', 0],
  ['outputs', 0, 'name'],
  ['outputs', 0, 'parameters'],
  ['outputs', 0, 'parameters', 'classification'],
  ['outputs', 1, 'extra'],
  ['extra'],
]

function mutate(
  body: unknown,
  path: (string | number)[],
  value: unknown,
  remove: boolean,
): unknown {
  if (path.length === 0) return value
  const copy = structuredClone(body) as Record<string | number, unknown>
  let at: Record<string | number, unknown> = copy
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, unknown>
  const last = path.at(-1) as string | number
  if (remove) delete at[last]
  else at[last] = value
  return copy
}

/** Binary inputs are left to the schema path (infer-body.ts), so the fast check may say no to them. */
const hasBinaryInput = (body: unknown) => JSON.stringify(body ?? null).includes('binary_data_size')

describe('isJsonInferenceRequest agrees with InferenceRequestSchema', () => {
  it('accepts the valid request, and the schema does too', () => {
    expect(InferenceRequestSchema.safeParse(VALID).success).toBe(true)
    expect(isJsonInferenceRequest(VALID)).toBe(true)
  })

  it('gives the schema verdict on every single and double mutation of it', () => {
    const cases: unknown[] = []
    for (const path of PATHS) {
      cases.push(mutate(VALID, path, undefined, true))
      for (const value of ODD_VALUES) cases.push(mutate(VALID, path, value, false))
    }
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
    let rejected = 0
    for (const body of cases) {
      const verdict = InferenceRequestSchema.safeParse(body).success
      const fast = isJsonInferenceRequest(body)
      // Never yes where the schema says no.
      if (fast) expect({ body, verdict }).toEqual({ body, verdict: true })
      // And yes wherever the schema says yes to JSON tensors (so the hot path rarely needs zod).
      if (verdict && !hasBinaryInput(body)) expect({ body, fast }).toEqual({ body, fast: true })
      if (verdict) accepted++
      else rejected++
    }
    expect(accepted).toBeGreaterThan(100)
    expect(rejected).toBeGreaterThan(100)
  })

  it('answers bodies that are not objects', () => {
    for (const body of [null, 1, 'x', [], [VALID], true])
      expect(isJsonInferenceRequest(body)).toBe(false)
  })
})
