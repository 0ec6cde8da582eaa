/**
 * What every build step reads: the parsed recipe, the base and expert models' float tensors, where each tensor is
 * used, the router's feature and the routing data split. Built once by the first step (load-inputs.ts).
 * @module
 */
import type { Datatype, Recipe } from '@twinserve/shared'
import type { TensorSite } from '../graph/weight-sites.ts'
import type { IoTensor } from '../import/model-io.ts'
import type { OnnxModel } from '../import/read-onnx.ts'
import type { LoadedRecipe } from '../import/recipe-file.ts'
import type { RoutingSplit } from '../router/routing-data.ts'
import type { Reporter } from './progress.ts'

export interface BuildContext {
  recipe: Recipe
  /** Absolute paths of the files the recipe names. */
  files: LoadedRecipe['files']
  base: OnnxModel
  /** Bytes of every expert file (with external data), for the size report. */
  expertsBytes: number
  /** Float initializers by name: the base's, and each expert's in recipe order. */
  baseValues: Map<string, Float32Array>
  expertValues: Map<string, Float32Array>[]
  expertNames: string[]
  sites: Map<string, TensorSite>
  /** The tensors that carry exclusive knowledge. */
  selected: TensorSite[]
  inputs: (IoTensor & { datatype: Datatype })[]
  outputs: (IoTensor & { datatype: Datatype })[]
  /** The shared-model tensor the router reads. */
  feature: string
  split: RoutingSplit
  reporter: Reporter
}
