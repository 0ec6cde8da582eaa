export { signConsensusSum, tallConsensus } from './consensus.ts'
export {
  type ExpertParams,
  type GtaOptions,
  generalizedTaskArithmetic,
  resolveExpertParams,
} from './gta.ts'
export { mergeTensor, validateMergeInput } from './merge-tensor.ts'
export { keepRankRange } from './rank-select.ts'
export { getStrategy, MERGE_STRATEGIES } from './registry.ts'
export { createRng, type Rng } from './rng.ts'
export {
  bernoulli,
  dellaMagprune,
  magnitude,
  magnitudeOutliers,
  type SparsificationMethod,
  sparsify,
} from './sparsify.ts'
export type { MergeContext, MergeStrategy, TensorMergeInput } from './types.ts'
