export { signConsensusBlocks, signConsensusSum, tallConsensus } from './consensus.ts'
export {
  type CompressedDelta,
  type CompressionTarget,
  type CompressOptions,
  compressDelta,
} from './exclusive.ts'
export { FISHER_FLOOR, fisherMerge } from './fisher.ts'
export {
  type ExpertParams,
  type GtaOptions,
  generalizedTaskArithmetic,
  resolveExpertParams,
} from './gta.ts'
export {
  type CallStats,
  defaultMatmulBackend,
  type GemmOptions,
  LARGE_FLOPS,
  MatmulBackend,
  type MatmulStats,
} from './matmul.ts'
export { mergeTensor, validateMergeInput } from './merge-tensor.ts'
export { allocateRanks, type RankAllocation, type RankCandidate } from './rank-budget.ts'
export { keepRankRange } from './rank-select.ts'
export { getStrategy, MERGE_STRATEGIES } from './registry.ts'
export { createRng, type Rng } from './rng.ts'
export { selectTensors, type TensorSelection } from './select-tensors.ts'
export {
  bernoulli,
  dellaMagprune,
  magnitude,
  magnitudeOutliers,
  type SparsificationMethod,
  type SparsifyParams,
  sparsify,
} from './sparsify.ts'
export { gramSvd, jacobiSvd, orthonormalize, randomizedSvd, type SvdFactors } from './svd.ts'
export { type SymEig, symEig } from './sym-eig.ts'
export type { MergeContext, MergeStrategy, TensorGrams, TensorMergeInput } from './types.ts'
