/**
 * The generalized-task-arithmetic family, declared as data the way mergekit's `registry.py` instantiates
 * `GeneralizedTaskArithmeticMerge`: each method is the one engine (`../gta.ts`) configured by a sparsifier
 * (`../sparsify.ts`) and whether TIES sign election decides the mix. The per-method parameters (λ, normalize,
 * rescale, density, gamma, epsilon, majority_sign_method) and their defaults come from each method's spec in
 * `@twinserve/shared`.
 * @see https://github.com/arcee-ai/mergekit/blob/main/mergekit/merge_methods/registry.py
 * @module
 */
import type { MajoritySignMethod, MergeSpecOf } from '@twinserve/shared'
import { type ExpertParamSource, generalizedTaskArithmetic, resolveExpertParams } from '../gta.ts'
import type { SparsificationMethod } from '../sparsify.ts'
import type { MergeStrategy } from '../types.ts'

type GtaMethodName =
  | 'task_arithmetic'
  | 'ties'
  | 'dare_linear'
  | 'dare_ties'
  | 'breadcrumbs'
  | 'breadcrumbs_ties'
  | 'della'
  | 'della_linear'

/** What every spec of the family carries (task_arithmetic has no rescale, the `_ties` ones a sign method). */
type GtaSpec = ExpertParamSource & {
  lambda: number
  normalize: boolean
  rescale?: boolean
  majority_sign_method?: MajoritySignMethod
}

/** Sign election exactly for the methods whose spec names a majority sign method (checked by the compiler). */
type SignElection<K extends GtaMethodName> =
  MergeSpecOf<K> extends { majority_sign_method: MajoritySignMethod } ? true : false

interface GtaMethod {
  /** The paper this implements. */
  referenceUrl: string
  sparsification: SparsificationMethod | null
  /** TIES sign election and the agreeing-entries sum; otherwise a plain weighted sum. */
  signElection: boolean
}

export const GTA_METHODS = {
  /** θ₀ + λ·Σ w_i·(θ_i − θ₀). */
  task_arithmetic: {
    referenceUrl: 'https://arxiv.org/abs/2212.04089',
    sparsification: null,
    signElection: false,
  },
  /**
   * TIES-Merging: trim each task vector to its `density` largest magnitudes, elect a sign per entry, then take
   * the disjoint mean of the agreeing entries (normalize) and add λ times it to θ₀.
   */
  ties: {
    referenceUrl: 'https://arxiv.org/abs/2306.01708',
    sparsification: 'magnitude',
    signElection: true,
  },
  /**
   * DARE with a plain weighted sum: drop each task-vector entry with probability 1 − density (seeded
   * Bernoulli), rescale the survivors by L1-norm matching, then task arithmetic.
   */
  dare_linear: {
    referenceUrl: 'https://arxiv.org/abs/2311.03099',
    sparsification: 'random',
    signElection: false,
  },
  /** DARE drop-and-rescale followed by TIES sign election and the agreeing-entries sum. */
  dare_ties: {
    referenceUrl: 'https://arxiv.org/abs/2311.03099',
    sparsification: 'random',
    signElection: true,
  },
  /**
   * Model Breadcrumbs: remove the `gamma` largest-magnitude outliers and the smallest entries down to
   * `density`, then task arithmetic.
   */
  breadcrumbs: {
    referenceUrl: 'https://arxiv.org/abs/2312.06795',
    sparsification: 'magnitude_outliers',
    signElection: false,
  },
  /** Model Breadcrumbs sparsification followed by TIES sign election. */
  breadcrumbs_ties: {
    referenceUrl: 'https://arxiv.org/abs/2312.06795',
    sparsification: 'magnitude_outliers',
    signElection: true,
  },
  /**
   * DELLA-Merging: MagPrune keeps each entry with a probability that grows with its magnitude rank in its row
   * (density ± epsilon), rescales, then TIES sign election and the normalized agreeing-entries mean.
   */
  della: {
    referenceUrl: 'https://arxiv.org/abs/2406.11617',
    sparsification: 'della_magprune',
    signElection: true,
  },
  /** DELLA MagPrune followed by a plain weighted sum (no sign election). */
  della_linear: {
    referenceUrl: 'https://arxiv.org/abs/2406.11617',
    sparsification: 'della_magprune',
    signElection: false,
  },
} as const satisfies { [K in GtaMethodName]: GtaMethod & { signElection: SignElection<K> } }

function gtaStrategy<K extends GtaMethodName>(name: K): MergeStrategy<K> {
  const method: GtaMethod = GTA_METHODS[name]
  return {
    name,
    referenceUrl: method.referenceUrl,
    merge(parsed, ctx) {
      const spec: GtaSpec = parsed
      return generalizedTaskArithmetic(ctx, {
        sparsification: method.sparsification,
        consensus: method.signElection ? (spec.majority_sign_method ?? null) : null,
        lambda: spec.lambda,
        normalize: spec.normalize,
        rescale: spec.rescale ?? false,
        params: resolveExpertParams(spec, ctx.names),
      })
    },
  }
}

export const taskArithmetic = gtaStrategy('task_arithmetic')
export const ties = gtaStrategy('ties')
export const dareLinear = gtaStrategy('dare_linear')
export const dareTies = gtaStrategy('dare_ties')
export const breadcrumbs = gtaStrategy('breadcrumbs')
export const breadcrumbsTies = gtaStrategy('breadcrumbs_ties')
export const della = gtaStrategy('della')
export const dellaLinear = gtaStrategy('della_linear')
