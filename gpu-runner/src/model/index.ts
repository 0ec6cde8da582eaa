/**
 * The served model's public surface (`@twinserve/gpu-runner/model`): load a twin package into a `ServedModel`
 * that merges per request. The merge cache, control encoding and materialisation are internal.
 * @module
 */
export { type LoadModelOptions, loadModel } from './load-model.ts'
export { type MergePath, type ServedModel, TWIN_VARIANT } from './served-model.ts'
