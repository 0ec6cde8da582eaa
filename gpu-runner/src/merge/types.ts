/**
 * The contract every merge strategy implements: a pure function from one tensor's base and expert values to
 * the merged values, given its parsed spec. Strategies are looked up in `registry.ts`; callers go through
 * `mergeTensor`, which validates inputs first.
 * @module
 */
import type { MergeMethodName, MergeSpecOf } from '@twinserve/shared'
import type { Rng } from './rng.ts'

/** One tensor name across all experts (the unit the builder streams). */
export interface TensorMergeInput {
  /** θ₀, the base model's values. */
  base: Float32Array // [numel]
  /** θ_i, one per expert, in the order of `names`. */
  experts: readonly Float32Array[] // [T][numel]
  names: readonly string[]
  shape: readonly number[]
  tensorName: string
  /**
   * Data-informed methods (`regmean`): the Gram matrices of this tensor's inputs on each expert's data, when it is
   * the weight of a linear map and the builder collected them (build/pipeline/input-grams.ts). Data-free methods
   * ignore it; without it `regmean` treats the tensor as it treats biases and norms (the weighted average).
   */
  grams?: TensorGrams
}

/** The inputs X_i (rows × d_in) that a linear weight saw on each expert's data, as Gram matrices. */
export interface TensorGrams {
  /** Per expert, in the order of `names`: G_i = X_iᵀ·X_i / rows, [d_in, d_in] row-major. */
  perExpert: readonly Float64Array[]
  /** The map's input width. */
  dIn: number
  /** The tensor is stored [d_out, d_in] and multiplies as x·Wᵀ (Gemm transB=1, a Transpose before a MatMul). */
  transposed: boolean
}

/** What a strategy gets: validated input plus a seeded random stream per expert. */
export interface MergeContext extends TensorMergeInput {
  /** Stream for expert i, keyed by (spec seed, method, tensor name, expert name): order-independent. */
  rngFor(expert: number): Rng
}

export interface MergeStrategy<K extends MergeMethodName = MergeMethodName> {
  readonly name: K
  /** The paper (or spec) this implements. */
  readonly referenceUrl: string
  /** Pure: no I/O, no global randomness. Returns a new array of `base.length` values. */
  merge(spec: MergeSpecOf<K>, ctx: MergeContext): Float32Array
}
