/**
 * The conformance suite every merge strategy runs (one shared file, called from each `<name>.test.ts`), plus
 * helpers for golden-vector tests. Checks the properties every method must have regardless of its formula.
 * @module
 */
import {
  AppError,
  type ErrorCode,
  type MergeMethodName,
  type MergeSpecInput,
  type MergeSpecOf,
  parseMergeSpec,
} from '@twinserve/shared'
import { describe, expect, it } from 'vitest'
import {
  createRng,
  getStrategy,
  type MergeContext,
  mergeTensor,
  type Rng,
  type TensorMergeInput,
} from '../src/merge/index.ts'

export interface ConformanceOptions {
  method: MergeMethodName
  /** A spec with non-default parameters, used for order independence and purity. */
  typical: MergeSpecInput
  /** A spec under which one expert at weight 1 comes back unchanged, or why the method has no such spec. */
  identity: MergeSpecInput | { skip: string }
  /** `density: 1` (or equivalent) forms that must equal their unsparsified method. */
  densityOne?: readonly { spec: MergeSpecInput; equals: MergeSpecInput }[]
  /** Random methods: a spec with density < 1 (seed is varied by the suite). */
  random?: MergeSpecInput
  /** How many experts the method needs at least (model_stock: 2). */
  minExperts?: number
  /**
   * Data-informed methods: run every check with a random Gram matrix per expert attached (the tensor is a
   * [d_in = 6, d_out = 7] linear weight), as the builder passes them.
   */
  grams?: boolean
}

/** A strategy context with explicit per-expert random streams (golden tests inject fixed uniforms). */
export function makeContext(input: TensorMergeInput, rngs?: readonly Rng[]): MergeContext {
  return {
    ...input,
    rngFor: (i) => rngs?.[i] ?? createRng(0, 'test', input.tensorName, input.names[i] ?? ''),
  }
}

/** Parses a spec of one known method (for calling a strategy directly). */
export function specOf<K extends MergeMethodName>(
  input: Extract<MergeSpecInput, { method: K }>,
): MergeSpecOf<K> {
  return parseMergeSpec(input) as MergeSpecOf<K>
}

/** An Rng that replays fixed uniforms (for golden vectors of DARE/DELLA); throws when they run out. */
export function fixedUniforms(values: readonly number[]): Rng {
  let i = 0
  return {
    uniform: () => {
      const v = values[i++]
      if (v === undefined) throw new Error('fixedUniforms: sequence exhausted')
      return v
    },
    normal: () => {
      throw new Error('fixedUniforms: normal() not expected')
    },
  }
}

/** θ = base + δ, rounded to float32 exactly as a checkpoint would store it. */
export function plus(base: readonly number[], delta: readonly number[]): Float32Array {
  return Float32Array.from(base, (b, j) => b + (delta[j] as number))
}

export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol = 1e-6,
): void {
  expect(actual.length).toBe(expected.length)
  for (let j = 0; j < expected.length; j++) {
    const a = actual[j] as number
    const e = expected[j] as number
    if (!(Math.abs(a - e) <= tol * Math.max(1, Math.abs(e))))
      expect.fail(`value ${j}: got ${a}, expected ${e} (±${tol})`)
  }
}

export function expectAppError(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(AppError)
    expect((err as AppError).code).toBe(code)
    if (message) expect((err as AppError).message).toMatch(message)
    return
  }
  expect.fail(`expected AppError ${code}, nothing was thrown`)
}

/** Deterministic test tensors: values of either sign, magnitudes spread over a few decades. */
function randomTensor(n: number, rng: Rng, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale)
}

function withExperts(spec: MergeSpecInput, weights: Record<string, number>): MergeSpecInput {
  if (!('experts' in spec) && spec.method === 'model_stock') return spec
  const experts: Record<string, Record<string, number>> = {}
  const given = ('experts' in spec ? spec.experts : undefined) ?? {}
  for (const [name, w] of Object.entries(weights)) experts[name] = { ...given[name], weight: w }
  return { ...spec, experts } as MergeSpecInput
}

/** XᵀX / rows of a random [rows, d] X: a symmetric positive semi-definite Gram matrix, as the builder collects. */
export function randomGram(d: number, rows: number, rng: Rng): Float64Array {
  const x = Float64Array.from({ length: rows * d }, () => rng.normal())
  const g = new Float64Array(d * d)
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < d; i++)
      for (let j = 0; j < d; j++)
        g[i * d + j] =
          (g[i * d + j] as number) + (x[r * d + i] as number) * (x[r * d + j] as number)
  return g.map((v) => v / rows)
}

export function runStrategyConformance(opts: ConformanceOptions): void {
  const { method } = opts
  const strategy = getStrategy(method)
  const shape = [6, 7]
  const n = 42
  const rng = createRng(7, 'conformance', method)
  const base = randomTensor(n, rng)
  const names = ['alpha', 'bravo', 'charlie', 'delta']
  const experts = names.map(() => {
    const d = randomTensor(n, rng, 0.1)
    return Float32Array.from(base, (b, j) => b + (d[j] as number))
  })
  const gramOf = new Map(names.map((name) => [name, randomGram(6, 20, rng)]))
  const input = (
    list: readonly Float32Array[] = experts,
    ns: readonly string[] = names,
  ): TensorMergeInput => ({
    base,
    experts: list,
    names: ns,
    shape,
    tensorName: 'layer.0.weight',
    ...(opts.grams
      ? {
          grams: {
            perExpert: ns.map((name) => gramOf.get(name) as Float64Array),
            dIn: 6,
            transposed: false,
          },
        }
      : {}),
  })

  describe(`${method}: conformance${opts.grams ? ' (with Gram matrices)' : ''}`, () => {
    it('is registered under its name with a paper link', () => {
      expect(strategy.name).toBe(method)
      expect(strategy.referenceUrl).toMatch(/^https:\/\/arxiv\.org\/abs\/\d{4}\.\d{4,5}$/)
    })

    if ('skip' in opts.identity)
      it.skip(`one expert at weight 1 gives that expert: ${opts.identity.skip}`)
    else {
      const spec = parseMergeSpec(opts.identity)
      it('one expert at weight 1 gives that expert back', () => {
        const one = experts[0] as Float32Array
        const out = mergeTensor(spec, input([one], ['alpha']))
        expectClose(out, one, 1e-6)
      })
    }

    it('does not depend on expert order', () => {
      const spec = parseMergeSpec(
        withExperts(opts.typical, { alpha: 1, bravo: 0.5, charlie: 2, delta: 0.75 }),
      )
      const forward = mergeTensor(spec, input())
      const order = [2, 0, 3, 1]
      const shuffled = mergeTensor(
        spec,
        input(
          order.map((i) => experts[i] as Float32Array),
          order.map((i) => names[i] as string),
        ),
      )
      expectClose(shuffled, forward, 1e-6)
    })

    it('zero task vectors give the base', () => {
      const spec = parseMergeSpec(opts.typical)
      const copies = names.map(() => Float32Array.from(base))
      expectClose(mergeTensor(spec, input(copies)), base, 1e-7)
    })

    it('is pure: inputs untouched, a new array returned', () => {
      const spec = parseMergeSpec(opts.typical)
      const before = experts.map((e) => Float32Array.from(e))
      const baseBefore = Float32Array.from(base)
      const out = mergeTensor(spec, input())
      expect(out).not.toBe(base)
      expect(out.length).toBe(n)
      expect(base).toEqual(baseBefore)
      for (const [i, e] of experts.entries()) expect(e).toEqual(before[i])
    })

    for (const pair of opts.densityOne ?? [])
      it(`density=1 equals the unsparsified form (${pair.equals.method})`, () => {
        const a = mergeTensor(parseMergeSpec(pair.spec), input())
        const b = mergeTensor(parseMergeSpec(pair.equals), input())
        expectClose(a, b, 1e-6)
      })

    const random = opts.random
    if (random) {
      it('a seeded run is deterministic per (seed, tensor), and the seed matters', () => {
        const spec = parseMergeSpec({ ...random, seed: 11 })
        const a = mergeTensor(spec, input())
        const b = mergeTensor(spec, input())
        expect(a).toEqual(b)
        const other = mergeTensor(parseMergeSpec({ ...random, seed: 12 }), input())
        expect(other).not.toEqual(a)
        const renamed = mergeTensor(spec, { ...input(), tensorName: 'layer.1.weight' })
        expect(renamed).not.toEqual(a)
      })

      it('keeps about `density` of the entries and preserves the mean after rescale', () => {
        // One expert, positive task vector: L1 rescaling restores its sum (so its mean) exactly, the check
        // that catches a rescale computed and thrown away; the kept fraction is about density.
        const big = 40_000
        const r = createRng(3, 'mean', method)
        const b0 = new Float32Array(big)
        const delta = Float32Array.from({ length: big }, () => 0.5 + r.uniform())
        const theta = Float32Array.from(delta)
        const density = 0.3
        const one: TensorMergeInput = {
          base: b0,
          experts: [theta],
          names: ['solo'],
          shape: [200, 200],
          tensorName: 'mean.check',
        }
        const mean = (x: Float32Array) => x.reduce((a, v) => a + v, 0) / x.length
        const rescaled = mergeTensor(parseMergeSpec({ ...random, density, rescale: true }), one)
        expect(mean(rescaled)).toBeCloseTo(mean(delta), 4)
        const raw = mergeTensor(parseMergeSpec({ ...random, density, rescale: false }), one)
        const kept = raw.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0) / big
        // Binomial(40000, 0.3): σ ≈ 0.0023 on the fraction; 5σ bounds.
        expect(Math.abs(kept - density)).toBeLessThan(0.012)
        // DARE drops uniformly, so the raw mean is about density × mean (DELLA favours large entries).
        if (random.method.startsWith('dare'))
          expect(Math.abs(mean(raw) / mean(delta) - density)).toBeLessThan(0.01)
      })
    }

    it('mismatched shapes raise INCOMPATIBLE_EXPERTS', () => {
      const spec = parseMergeSpec(opts.typical)
      const short = experts.map((e, i) => (i === 1 ? e.subarray(0, n - 1) : e))
      expectAppError(() => mergeTensor(spec, input(short)), 'INCOMPATIBLE_EXPERTS', /bravo/)
      expectAppError(
        () => mergeTensor(spec, { ...input(), shape: [7, 7] }),
        'INCOMPATIBLE_EXPERTS',
        /layer\.0\.weight/,
      )
    })

    it('NaN or Inf inputs raise INVALID_MODEL before merging', () => {
      const spec = parseMergeSpec(opts.typical)
      for (const badValue of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        const bad = experts.map((e, i) => {
          if (i !== 2) return e
          const c = Float32Array.from(e)
          c[5] = badValue
          return c
        })
        expectAppError(() => mergeTensor(spec, input(bad)), 'INVALID_MODEL', /charlie value 5/)
      }
      const badBase = Float32Array.from(base)
      badBase[0] = Number.NaN
      expectAppError(
        () => mergeTensor(spec, { ...input(), base: badBase }),
        'INVALID_MODEL',
        /base/,
      )
    })

    if (opts.typical.method !== 'model_stock')
      it('a spec naming an expert that is not merged raises UNKNOWN_EXPERT', () => {
        const spec = parseMergeSpec(withExperts(opts.typical, { alpha: 1, zulu: 1 }))
        expectAppError(() => mergeTensor(spec, input()), 'UNKNOWN_EXPERT', /zulu/)
      })

    if (opts.minExperts && opts.minExperts > 1)
      it(`fewer than ${opts.minExperts} experts is a clear INVALID_REQUEST`, () => {
        const spec = parseMergeSpec(opts.typical)
        const few = experts.slice(0, opts.minExperts ? opts.minExperts - 1 : 0)
        expectAppError(
          () => mergeTensor(spec, input(few, names.slice(0, few.length))),
          'INVALID_REQUEST',
        )
      })
  })
}
