export { type ExportMlpOptions, exportMlpOnnx } from './export-onnx.ts'
export {
  checkWeights,
  cloneMlp,
  initMlp,
  layerParamNames,
  type MlpLayer,
  type MlpWeights,
  parameterCount,
} from './mlp.ts'
export {
  buildForwardGraph,
  buildInferenceGraph,
  buildTrainingGraph,
  MLP_GRAPH_NAMES,
} from './mlp-graphs.ts'
export {
  argmaxRows,
  type Evaluation,
  type LossAndGradients,
  type MlpSessionOptions,
  MlpSessions,
  scoreLogits,
} from './mlp-sessions.ts'
export {
  type AdamOptions,
  createAdam,
  createSgd,
  type Optimizer,
  type ParamSlot,
  type SgdOptions,
} from './optimizer.ts'
export { createRng, mixSeed, permutation, type Rng, shuffleInPlace } from './rng.ts'
export {
  fma32,
  nonZeroFraction,
  type SparseRows,
  sgemmStrideK,
  sparseLinearForward,
  sparseLinearWeightGrad,
  toSparseRows,
} from './sparse-linear.ts'
export {
  type EpochRecord,
  type TrainMlpOptions,
  type TrainMlpResult,
  trainMlp,
} from './train-mlp.ts'
