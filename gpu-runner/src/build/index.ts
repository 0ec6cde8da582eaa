/**
 * The offline builder's public surface (`@twinserve/gpu-runner/build`): build a twin package from a recipe, the
 * build's progress reporter, and the ONNX model reading the benchmarks share with it. Everything else in build/
 * is internal and may move; import from here.
 * @module
 */
export {
  type BuildOptions,
  type BuildReport,
  buildPackage,
  type VariantReport,
} from './build-package.ts'
export { createReporter, markdownTable, type Reporter, type ReporterOptions } from './progress.ts'
export {
  decodeModel,
  elementCount,
  floatInitializers,
  isFloatTensor,
  type OnnxModel,
  readOnnx,
  readOnnxBytes,
  setTensorFloat32,
  tensorDims,
  tensorToFloat32,
  withFloatInitializers,
} from './read-onnx.ts'
export { type LoadedRecipe, loadRecipe } from './recipe-file.ts'
