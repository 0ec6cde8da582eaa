/**
 * The zoo's base and expert models as the quality report needs them: float initializers by name, and plain ONNX
 * graphs with merged values swapped in (the static merges), built with the merge engine `twinserve build` uses,
 * one tensor at a time.
 * @module
 */

import {
  floatInitializers,
  mergeTensors,
  type OnnxModel,
  readOnnx,
  withFloatInitializers,
} from '@twinserve/gpu-runner/build'
import { onnx } from '@twinserve/gpu-runner/onnx'
import type { MergeSpec } from '@twinserve/shared'

export interface ZooModels {
  base: OnnxModel
  baseValues: Map<string, Float32Array>
  /** In expert order. */
  names: string[]
  experts: Map<string, Float32Array>[]
  expertPaths: string[]
  /** Bytes of the expert files together (what a package is compared with). */
  expertBytes: number
}

export async function readZooModels(
  basePath: string,
  experts: readonly { name: string; path: string }[],
): Promise<ZooModels> {
  const base = await readOnnx(basePath)
  const models = await Promise.all(experts.map((e) => readOnnx(e.path)))
  return {
    base,
    baseValues: floatInitializers(base),
    names: experts.map((e) => e.name),
    experts: models.map(floatInitializers),
    expertPaths: experts.map((e) => e.path),
    expertBytes: models.reduce((a, m) => a + m.sizeBytes, 0),
  }
}

/**
 * The merged value of every float tensor under `spec` (the builder's shared-merge step); `regmean` also needs the
 * Grams the builder would compute (recipeGrams).
 */
export function mergeValues(
  z: ZooModels,
  spec: MergeSpec,
  grams?: Parameters<typeof mergeTensors>[3],
): Map<string, Float32Array> {
  return mergeTensors(z, spec, undefined, grams)
}

/** A plain graph (the base's) holding `values`: what a static variant file contains. */
export function graphBytes(z: ZooModels, values: ReadonlyMap<string, Float32Array>): Uint8Array {
  return onnx.ModelProto.encode(withFloatInitializers(z.base.model, values)).finish()
}
