/**
 * Build step: one twin graph against a shared merge (a skeleton on disk, from the merge pass, with the experts'
 * exclusive knowledge against it): where the batch is in every tensor, a router trained on the merge's features,
 * and the rewritten graph, written tensor by tensor. Runs for the package's twin graph (controls 'inputs') and for
 * every variant with exclusive knowledge (controls 'router').
 * @module
 */
import type { ModelProto } from '../../onnx/proto.ts'
import type { RowLayout } from '../graph/row-layout.ts'
import { batchDim, batchInput } from '../import/model-io.ts'
import { featureRows } from '../router/features.ts'
import { routerEmitter } from '../router/router-graph.ts'
import type { TrainedRouter } from '../router/train-router.ts'
import { rewriteTwinGraph } from '../twin-graph/rewrite.ts'
import { storeSharedAsFloat16 } from '../twin-graph/shared-float16.ts'
import type { BuildContext } from './build-context.ts'
import type { ExclusiveKnowledge } from './exclusive-knowledge.ts'
import { writeGraph } from './graph-file.ts'
import { trainPackageRouter } from './router-training.ts'
import { trackRoutingRows } from './row-layouts.ts'
import type { WrittenFile } from './write-model.ts'

export interface TwinModel {
  files: WrittenFile[]
  router: TrainedRouter
  exclusive: ExclusiveKnowledge
  featureSize: number
}

/**
 * @param label `twin` for the package's twin graph, else the variant's name
 * @param shared the shared merge and the exclusive knowledge against it
 * @param controls 'inputs': the twin contract; 'router': a variant's plain graph with the router's weights
 * @param rel where to write the graph, relative to the staging directory
 */
export async function buildTwinModel(
  ctx: BuildContext,
  label: string,
  shared: { model: ModelProto; exclusive: ExclusiveKnowledge },
  controls: 'inputs' | 'router',
  rel: string,
): Promise<TwinModel> {
  const { recipe } = ctx
  const { model: sharedModel, exclusive } = shared
  const { layouts } = await trackRoutingRows(sharedModel, ctx.inputs, ctx.split.train, ctx.staging)
  const featureLayouts = ctx.features.map((f) => featureRows(f, layouts.get(f)))
  const { router, featureSize } = await trainPackageRouter(
    ctx,
    label,
    sharedModel,
    featureLayouts,
    exclusive,
  )
  const { mask, bag } = ctx.routerTokens
  const twin = rewriteTwinGraph({
    model: sharedModel,
    sites: ctx.sites,
    matrices: exclusive.matrices,
    vectors: exclusive.vectors,
    experts: ctx.expertNames.length,
    layouts,
    feature: { tensor: ctx.feature, layout: featureLayouts[0] as RowLayout },
    ...(ctx.features.length > 1
      ? {
          extraFeatures: ctx.features
            .slice(1)
            .map((tensor, i) => ({ tensor, layout: featureLayouts[i + 1] as RowLayout })),
        }
      : {}),
    ...(mask !== undefined ? { poolingMask: mask } : {}),
    ...(bag ? { bag: { ids: bag.ids, mask: bag.mask } } : {}),
    batchInput: batchInput(ctx.inputs),
    router: routerEmitter(router.model),
    controls,
    batchDim: batchDim(ctx.inputs),
    factorDtype: recipe.exclusive.dtype,
    ...(recipe.exclusive.topk_gather !== undefined
      ? { topkGather: recipe.exclusive.topk_gather }
      : {}),
  })
  // The merge pass rounded these weights to float16 values; the file stores them so.
  if (recipe.shared_dtype === 'float16')
    await storeSharedAsFloat16(
      twin,
      new Set((sharedModel.graph?.initializer ?? []).map((t) => t.name ?? '')),
    )
  const written = await writeGraph(ctx, rel, twin, controls === 'inputs' ? undefined : label)
  return { files: written.files, router, exclusive, featureSize }
}
