/**
 * Build step 1: read the recipe and every model as a skeleton (float tensors stay on disk, external data files
 * checked; import/read-onnx.ts), normalised (Constant-node weights lifted: import/normalise.ts), check the opset
 * and that each expert has the base's graph, find where each float tensor is used and which carry exclusive
 * knowledge, and read and split the routing data.
 * @module
 */

import { resolve } from 'node:path'
import { AppError } from '@twinserve/shared'
import { checkOpset, opsetForms } from '../graph/ops.ts'
import { analyseSites } from '../graph/weight-sites.ts'
import { assertSameGraph } from '../import/compare-graphs.ts'
import { type IoTensor, modelInputs, modelOutputs } from '../import/model-io.ts'
import { type OnnxModel, openOnnx } from '../import/read-onnx.ts'
import { loadRecipe } from '../import/recipe-file.ts'
import { locationOf } from '../import/tensor-data.ts'
import { routerFeatureList, tokenRouterInputs } from '../router/router-inputs.ts'
import { readRoutingData, splitRouting } from '../router/routing-data.ts'
import type { BuildContext } from './build-context.ts'
import { selectExclusive } from './exclusive-knowledge.ts'
import type { Reporter } from './progress.ts'
import { readRecipeTokenizer } from './text-tokenizer.ts'

/** The input of the last MatMul/Gemm in graph order: the shared model's last hidden features. */
export function defaultFeature(model: OnnxModel): string {
  const nodes = model.graph.node ?? []
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]
    if ((n?.opType === 'MatMul' || n?.opType === 'Gemm') && n.input?.[0]) return n.input[0]
  }
  throw new AppError(
    'INVALID_MODEL',
    `${model.path} has no MatMul/Gemm; name the router feature in the recipe`,
  )
}

function checkFeature(model: OnnxModel, feature: string): void {
  const produced = new Set<string>()
  for (const n of model.graph.node ?? []) for (const o of n.output ?? []) produced.add(o)
  for (const i of model.graph.input ?? []) produced.add(i.name ?? '')
  if (!produced.has(feature))
    throw new AppError(
      'INVALID_REQUEST',
      `router.feature '${feature}' is not a tensor of the base graph (${model.path}); name a node output or input`,
    )
}

/**
 * Label names are for class scores: some float output [batch, …, k] must hold each expert's labels (k ≥ their
 * number, or k variable), since its task reads the first ones.
 */
function checkLabels(recipe: BuildContext['recipe'], outputs: readonly IoTensor[]): void {
  const scores = outputs.filter((o) => o.elem === 'float' && o.dims.length >= 2)
  recipe.experts.forEach((e, i) => {
    const n = e.labels?.length ?? 0
    if (n === 0) return
    const fits = scores.some((o) => {
      const last = o.dims[o.dims.length - 1]
      return typeof last !== 'number' || last >= n
    })
    if (!fits)
      throw new AppError(
        'INVALID_REQUEST',
        `experts.${i}.labels: expert '${e.name}' has ${n} labels, but no float output of the model [batch, …, k] has k ≥ ${n} class scores (outputs: ${outputs.map((o) => `${o.name} [${o.dims.join(', ')}]`).join('; ')})`,
      )
  })
}

/**
 * `router.prompt_likelihood` is a routing mode of the runner's generation engine: a model it does not generate with
 * (no `input_ids`, no KV cache) would carry it and be routed by its router regardless, so the recipe is refused.
 */
function checkPromptLikelihood(recipe: BuildContext['recipe'], inputs: readonly IoTensor[]): void {
  const names = inputs.map((i) => i.name)
  if (
    recipe.router.prompt_likelihood &&
    !(names.includes('input_ids') && names.includes('past_key_values.0.key'))
  )
    throw new AppError(
      'INVALID_REQUEST',
      `router.prompt_likelihood routes a decoder's generations: it needs a decoder with a KV cache (inputs input_ids and past_key_values.0.key), and the base's inputs are ${names.join(', ')}`,
    )
  const prior = recipe.router.prompt_likelihood?.log_prior
  if (prior && prior.length !== recipe.experts.length)
    throw new AppError(
      'INVALID_REQUEST',
      `router.prompt_likelihood.log_prior has ${prior.length} values; it needs one per expert (${recipe.experts.length}, in the recipe's order)`,
    )
}

type ModelsRead = Omit<BuildContext, 'split' | 'reporter' | 'staging' | 'externalAbove'>

/** True when a model keeps some weights in an external data file (not in its own .onnx). */
const usesExternalData = (m: OnnxModel) =>
  [...m.initializers.values()].some((t) => {
    const loc = locationOf(t)
    return loc !== undefined && loc.file !== resolve(m.path)
  })

async function readModels(recipePath: string, reporter: Reporter): Promise<ModelsRead> {
  const step = reporter.step('reading recipe and models')
  const { recipe, files } = await loadRecipe(recipePath)
  const base = await openOnnx(files.base)
  const opset = checkOpset(base.model, base.path)
  const experts: OnnxModel[] = []
  for (const [i, e] of recipe.experts.entries()) {
    const m = await openOnnx(files.experts[i] as string)
    assertSameGraph(base, m, e.name)
    experts.push(m)
    step.tick(i + 1, recipe.experts.length)
  }
  const sites = analyseSites(base.graph, base.initializers)
  const selected = selectExclusive(sites, recipe.exclusive)
  const features = routerFeatureList(recipe, () => defaultFeature(base))
  for (const f of features) checkFeature(base, f)
  const inputs = modelInputs(base.graph)
  const outputs = modelOutputs(base.graph)
  checkLabels(recipe, outputs)
  checkPromptLikelihood(recipe, inputs)
  const tokenizer =
    recipe.tokenizer && files.tokenizer
      ? await readRecipeTokenizer(recipe.tokenizer, files.tokenizer, inputs)
      : undefined
  const floats = [...base.initializers.values()].filter((t) => locationOf(t) !== undefined).length
  step.done(
    `${recipe.experts.length} experts, ${floats} float tensors, ${selected.length} selected for exclusive knowledge`,
  )
  return {
    recipe,
    files,
    base,
    experts,
    expertsBytes: experts.reduce((a, m) => a + m.sizeBytes, 0),
    expertNames: recipe.experts.map((e) => e.name),
    imported: {
      opset,
      forms: opsetForms(opset),
      liftedConstants: base.liftedConstants.length,
      externalInputs: [base, ...experts].some(usesExternalData),
    },
    sites,
    selected,
    inputs,
    outputs,
    feature: features[0] as string,
    features,
    routerTokens: tokenRouterInputs(recipe, tokenizer?.json, inputs),
    ...(tokenizer ? { tokenizer } : {}),
  }
}

export async function loadInputs(
  recipePath: string,
  reporter: Reporter,
  output: Pick<BuildContext, 'staging' | 'externalAbove'>,
): Promise<BuildContext> {
  const read = await readModels(recipePath, reporter)
  const { recipe, expertNames } = read
  const step = reporter.step('routing data')
  const examples = await readRoutingData(read.files.routing, expertNames, read.inputs, {
    ...(recipe.router.max_per_expert ? { maxPerExpert: recipe.router.max_per_expert } : {}),
    ...(read.tokenizer ? { text: read.tokenizer.tokenizer } : {}),
  })
  const split = splitRouting(examples, expertNames.length, {
    heldoutFraction: recipe.router.heldout_fraction,
    validationFraction: recipe.router.validation_fraction,
    seed: recipe.router.seed,
  })
  step.done(
    `${examples.length} examples: ${split.train.length} train, ${split.validation.length} validation, ${split.heldout.length} held out`,
  )
  return { ...read, split, reporter, ...output }
}
