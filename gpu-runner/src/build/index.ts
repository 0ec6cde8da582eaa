/**
 * The offline builder's public surface (`@twinserve/gpu-runner/build`): build a twin package from a recipe, the
 * build's progress reporter, the ONNX model reading and the per-tensor merge the benchmarks share with it, and a
 * seeded generator for example inputs. Everything else in build/ (layout: build/README.md) is internal and may
 * move; import from here.
 * @module
 */

export type { MatrixFactors } from '../factors/exclusive-factors.ts'
export { buildDelta, type DeltaReport, formatDelta } from './build-delta.ts'
export {
  type BuildOptions,
  type BuildReport,
  buildPackage,
  type VariantReport,
} from './build-package.ts'
// The twin-graph rewrite and what it needs, for benchmarks that emit a twin graph from synthetic factors
// (bench/perf/shared-basis-latency.ts) without a whole build.
export { analyseSites } from './graph/weight-sites.ts'
export { modelInputs, xorshift32 } from './import/model-io.ts'
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
} from './import/read-onnx.ts'
export { type LoadedRecipe, loadRecipe } from './import/recipe-file.ts'
export { type ExpertChange, parseChanges } from './pipeline/expert-changes.ts'
export {
  createReporter,
  markdownTable,
  type Reporter,
  type ReporterOptions,
} from './pipeline/progress.ts'
export { trackRows } from './pipeline/row-layouts.ts'
export { type MergeInputs, mergeTensors } from './pipeline/shared-merge.ts'
export { recipeGrams } from './recipe-grams.ts'
export { routerEmitter } from './router/router-graph.ts'
export {
  type ProbeInputs,
  probeRouters,
  type RouterProbeArm,
  type RouterProbeResult,
} from './router-probe.ts'
export { rewriteTwinGraph } from './twin-graph/rewrite.ts'
