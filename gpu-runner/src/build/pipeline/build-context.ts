/**
 * What every build step reads: the parsed recipe, the base and expert models as skeletons (their float tensors
 * stay on disk and are read one at a time: import/tensor-data.ts), where each tensor is used, the router's feature,
 * the routing data split, and the staging directory the package is written into. Built once by the first step
 * (load-inputs.ts).
 * @module
 */
import type { Datatype, Recipe } from '@twinserve/shared'
import type { TensorSite } from '../graph/weight-sites.ts'
import type { IoTensor } from '../import/model-io.ts'
import type { OnnxModel } from '../import/read-onnx.ts'
import type { LoadedRecipe } from '../import/recipe-file.ts'
import type { TokenRouterInputs } from '../router/features.ts'
import type { RoutingSplit } from '../router/routing-data.ts'
import type { Reporter } from './progress.ts'
import type { RecipeTokenizer } from './text-tokenizer.ts'

/** What was done to bring the models to the form the builder reads, for the build report. */
export interface ImportReport {
  /** The models' default-domain opset, which the twin graph keeps. */
  opset: number
  /** The forms the rewrite emitted for that opset (graph/ops.ts opsetForms); empty from opset 18. */
  forms: string[]
  /** Constant-node weights lifted to initializers (per model; the same in every one). */
  liftedConstants: number
  /** Whether any input model kept its weights in external data files. */
  externalInputs: boolean
}

export interface BuildContext {
  recipe: Recipe
  /** Absolute paths of the files the recipe names. */
  files: LoadedRecipe['files']
  /** The base and the experts (recipe order), as skeletons. */
  base: OnnxModel
  experts: OnnxModel[]
  /** Bytes of every expert file (with external data), for the size report. */
  expertsBytes: number
  expertNames: string[]
  sites: Map<string, TensorSite>
  /** The tensors that carry exclusive knowledge. */
  selected: TensorSite[]
  inputs: (IoTensor & { datatype: Datatype })[]
  outputs: (IoTensor & { datatype: Datatype })[]
  /** The recipe's tokenizer (text models), read and checked against the base's inputs. */
  tokenizer?: RecipeTokenizer
  /** The shared-model tensor the router reads (the first of `features`). */
  feature: string
  /** Every shared-model tensor the router reads, pooled and concatenated in this order. */
  features: string[]
  /** The token inputs the router also reads (masked pooling, bag of tokens): router/router-inputs.ts. */
  routerTokens: TokenRouterInputs
  split: RoutingSplit
  reporter: Reporter
  imported: ImportReport
  /** The directory the package is written into, beside `--out`; renamed into place once verified. */
  staging: string
  /** Package graphs above this many bytes get external data files (write-model.ts). */
  externalAbove: number
}
