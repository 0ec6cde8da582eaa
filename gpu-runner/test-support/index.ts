/**
 * What tests (and benchmarks) share about the runner (`@twinserve/gpu-runner/test-support`): the conformance
 * suite every merge strategy passes, the trainer's small generated problems, the builder's test models, a gRPC
 * client for the inference service, and a deadline per awaited step of a test.
 * The folder also holds the merge tests' fixed data (merge-golden.ts, svd-fixture.ts), imported by relative
 * path. Not part of the runner image.
 * @module
 */

export { type GrpcAnswer, InferenceTestClient } from './grpc-client.ts'
export {
  type ConformanceOptions,
  expectAppError,
  expectClose,
  fixedUniforms,
  makeContext,
  plus,
  randomGram,
  runStrategyConformance,
  specOf,
} from './merge-conformance.ts'
export { withinStep } from './step-deadline.ts'
export {
  BLOCK_SIZES,
  type BuildFixture,
  MLP_SIZES,
  mlpModel,
  type ParamProvider,
  perturbedParams,
  randomParams,
  seededNormal,
  transformerModel,
  writeBuildFixture,
  writeWithExternalData,
} from './test-models.ts'
export { blobs, oneHot, referenceLoss } from './train-helpers.ts'
