/**
 * The explicit registry of merge strategies, keyed by the closed names in `@twinserve/shared`. The mapped type
 * makes a name added to the shared list without an implementation (or with the wrong one) a compile error.
 * No side-effect imports: every entry is named here.
 * @module
 */
import type { MergeMethodName } from '@twinserve/shared'
import { consensus } from './strategies/consensus.ts'
import {
  breadcrumbs,
  breadcrumbsTies,
  dareLinear,
  dareTies,
  della,
  dellaLinear,
  taskArithmetic,
  ties,
} from './strategies/generalized-task-arithmetic.ts'
import { linear } from './strategies/linear.ts'
import { modelStock } from './strategies/model-stock.ts'
import { regmean } from './strategies/regmean.ts'
import type { MergeStrategy } from './types.ts'

export const MERGE_STRATEGIES = {
  linear,
  task_arithmetic: taskArithmetic,
  ties,
  dare_linear: dareLinear,
  dare_ties: dareTies,
  breadcrumbs,
  breadcrumbs_ties: breadcrumbsTies,
  della,
  della_linear: dellaLinear,
  model_stock: modelStock,
  consensus,
  regmean,
} as const satisfies { [K in MergeMethodName]: MergeStrategy<K> }

/** @example getStrategy('ties').referenceUrl // 'https://arxiv.org/abs/2306.01708' */
export function getStrategy<K extends MergeMethodName>(name: K): MergeStrategy<K> {
  return MERGE_STRATEGIES[name] as MergeStrategy<K>
}
