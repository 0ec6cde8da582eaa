/**
 * Build step: one twin graph against a shared merge: the experts' exclusive knowledge relative to it, the row
 * layouts the rewrite needs, a router trained on its features, and the rewritten graph, encoded. Runs for the
 * package's twin graph (controls 'inputs') and for every variant with exclusive knowledge (controls 'router').
 * @module
 */
import { batchDim, batchInput } from '../import/model-io.ts'
import { withFloatInitializers } from '../import/read-onnx.ts'
import { featureRows } from '../router/features.ts'
import { routerEmitter } from '../router/router-graph.ts'
import type { TrainedRouter } from '../router/train-router.ts'
import { rewriteTwinGraph } from '../twin-graph/rewrite.ts'
import type { BuildContext } from './build-context.ts'
import { computeExclusive, type ExclusiveKnowledge } from './exclusive-knowledge.ts'
import { encodeGraph } from './graph-file.ts'
import { trainPackageRouter } from './router-training.ts'
import { trackRoutingRows } from './row-layouts.ts'

export interface TwinModel {
  bytes: Uint8Array
  router: TrainedRouter
  exclusive: ExclusiveKnowledge
  featureSize: number
}

async function exclusiveKnowledge(
  ctx: BuildContext,
  label: string,
  shared: ReadonlyMap<string, Float32Array>,
): Promise<ExclusiveKnowledge> {
  const step = ctx.reporter.step(`${label}: exclusive knowledge`, ctx.selected.length)
  const exclusive = await computeExclusive({
    selected: ctx.selected,
    shared,
    experts: ctx.expertValues,
    spec: ctx.recipe.exclusive,
    onTensor: (d, t) => step.tick(d, t),
  })
  const totalRank = exclusive.matrices.reduce((a, m) => a + m.sigma.length, 0)
  step.done(
    `${exclusive.matrices.length} matrices (Σ rank ${totalRank}), ${exclusive.vectors.length} vectors`,
  )
  return exclusive
}

/**
 * @param label `twin` for the package's twin graph, else the variant's name
 * @param controls 'inputs': the twin contract; 'router': a variant's plain graph with the router's weights
 */
export async function buildTwinModel(
  ctx: BuildContext,
  label: string,
  shared: Map<string, Float32Array>,
  controls: 'inputs' | 'router',
): Promise<TwinModel> {
  const { recipe } = ctx
  const sharedModel = withFloatInitializers(ctx.base.model, shared)
  const exclusive = await exclusiveKnowledge(ctx, label, shared)
  const { layouts } = await trackRoutingRows(sharedModel, ctx.inputs, ctx.split.train)
  const featureLayout = featureRows(ctx.feature, layouts.get(ctx.feature))
  const { router, featureSize } = await trainPackageRouter(ctx, label, sharedModel, featureLayout)
  const twin = rewriteTwinGraph({
    model: sharedModel,
    sites: ctx.sites,
    matrices: exclusive.matrices,
    vectors: exclusive.vectors,
    experts: ctx.expertNames.length,
    layouts,
    feature: { tensor: ctx.feature, layout: featureLayout },
    batchInput: batchInput(ctx.inputs),
    router: routerEmitter(router.model),
    controls,
    batchDim: batchDim(ctx.inputs),
    factorDtype: recipe.exclusive.dtype,
    ...(recipe.exclusive.topk_gather !== undefined
      ? { topkGather: recipe.exclusive.topk_gather }
      : {}),
  })
  const bytes = encodeGraph(ctx, twin, controls === 'inputs' ? undefined : label)
  return { bytes, router, exclusive, featureSize }
}
