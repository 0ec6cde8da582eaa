/**
 * The tensor-level entry point the builder streams through: one tensor name across all experts at a time, so
 * peak memory is a few copies of one tensor × T, never T whole models. Validates before merging.
 * @module
 */
import { AppError, type MergeSpec, type MergeSpecOf } from '@twinserve/shared'
import { getStrategy } from './registry.ts'
import { createRng } from './rng.ts'
import type { MergeContext, MergeStrategy, TensorGrams, TensorMergeInput } from './types.ts'

function numelOf(shape: readonly number[], tensorName: string): number {
  let n = 1
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new AppError('INVALID_MODEL', `tensor ${tensorName}: bad shape [${shape.join(', ')}]`)
    n *= d
  }
  return n
}

function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i] as number)) return i
  return -1
}

/** The Grams must be one [d_in, d_in] finite matrix per expert, d_in the 2-D tensor's input axis. */
function validateGrams(grams: TensorGrams, input: TensorMergeInput): void {
  const { shape, tensorName, names } = input
  const dIn = shape[grams.transposed ? 1 : 0]
  if (shape.length !== 2 || dIn !== grams.dIn)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `tensor ${tensorName}: Gram matrices of width ${grams.dIn} do not fit a weight of shape [${shape.join(', ')}] (${grams.transposed ? '[d_out, d_in]' : '[d_in, d_out]'})`,
    )
  if (grams.perExpert.length !== names.length)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `tensor ${tensorName}: ${grams.perExpert.length} Gram matrices for ${names.length} experts`,
    )
  grams.perExpert.forEach((g, i) => {
    if (g.length !== grams.dIn * grams.dIn)
      throw new AppError(
        'INCOMPATIBLE_EXPERTS',
        `tensor ${tensorName}: expert ${names[i]}'s Gram matrix has ${g.length} values, [${grams.dIn}, ${grams.dIn}] needs ${grams.dIn * grams.dIn}`,
      )
    for (let j = 0; j < g.length; j++)
      if (!Number.isFinite(g[j] as number))
        throw new AppError(
          'INVALID_MODEL',
          `tensor ${tensorName}: expert ${names[i]}'s Gram matrix value ${j} is ${g[j]}`,
        )
  })
}

/** Throws the typed error for the first problem in `input`; returns the number of values per tensor. */
export function validateMergeInput(spec: MergeSpec, input: TensorMergeInput): number {
  const { base, experts, names, shape, tensorName } = input
  if (experts.length === 0)
    throw new AppError('INVALID_REQUEST', `tensor ${tensorName}: a merge needs at least one expert`)
  if (names.length !== experts.length)
    throw new AppError(
      'INVALID_REQUEST',
      `tensor ${tensorName}: ${experts.length} expert tensors but ${names.length} names`,
    )
  if (new Set(names).size !== names.length)
    throw new AppError('INVALID_REQUEST', `tensor ${tensorName}: an expert name is given twice`)
  const n = numelOf(shape, tensorName)
  if (base.length !== n)
    throw new AppError(
      'INCOMPATIBLE_EXPERTS',
      `tensor ${tensorName}: base has ${base.length} values, shape [${shape.join(', ')}] needs ${n}`,
    )
  experts.forEach((e, i) => {
    if (e.length !== n)
      throw new AppError(
        'INCOMPATIBLE_EXPERTS',
        `tensor ${tensorName}: expert ${names[i]} has ${e.length} values, the base has ${n} (shape [${shape.join(', ')}])`,
      )
  })
  const bad = firstNonFinite(base)
  if (bad >= 0)
    throw new AppError('INVALID_MODEL', `tensor ${tensorName}: base value ${bad} is ${base[bad]}`)
  experts.forEach((e, i) => {
    const at = firstNonFinite(e)
    if (at >= 0)
      throw new AppError(
        'INVALID_MODEL',
        `tensor ${tensorName}: expert ${names[i]} value ${at} is ${e[at]}`,
      )
  })
  if (input.grams) validateGrams(input.grams, input)
  if ('experts' in spec) {
    const known = new Set(names)
    for (const name of Object.keys(spec.experts))
      if (!known.has(name))
        throw new AppError(
          'UNKNOWN_EXPERT',
          `merge spec sets parameters for expert ${name}, which is not among [${names.join(', ')}]`,
        )
  }
  return n
}

/**
 * Merges one tensor across all experts with a parsed spec; returns the merged θ (a new array).
 * Throws INCOMPATIBLE_EXPERTS on mismatched sizes, INVALID_MODEL on NaN/Inf inputs, UNKNOWN_EXPERT for spec
 * entries that name no expert, INVALID_REQUEST for specs the data cannot satisfy, and MERGE_FAILED if the
 * result is not finite. Random methods draw from (spec.seed, method, tensorName, expert name), so a tensor's
 * result does not depend on processing order.
 * @example
 * const merged = mergeTensor(parseMergeSpec({ method: 'ties', density: 0.2 }), {
 *   base, experts: [a, b], names: ['math', 'code'], shape: [768, 768], tensorName: 'layer.0.q.weight',
 * })
 */
export function mergeTensor(spec: MergeSpec, input: TensorMergeInput): Float32Array {
  validateMergeInput(spec, input)
  const seed = 'seed' in spec ? spec.seed : 0
  const ctx: MergeContext = {
    ...input,
    rngFor: (i) => createRng(seed, spec.method, input.tensorName, input.names[i] ?? String(i)),
  }
  const out = run(spec, ctx)
  const bad = firstNonFinite(out)
  if (bad >= 0)
    throw new AppError(
      'MERGE_FAILED',
      `tensor ${input.tensorName}: ${spec.method} produced ${out[bad]} at value ${bad} (weights or lambda too large?)`,
    )
  return out
}

function run<K extends MergeSpec['method']>(spec: MergeSpecOf<K>, ctx: MergeContext): Float32Array {
  // getStrategy(K) pairs the spec's method with its strategy; TS cannot see through the union, hence the cast.
  const strategy = getStrategy(spec.method as K) as MergeStrategy<K>
  return strategy.merge(spec, ctx)
}
