/**
 * Build step: the router's features (the shared model's value of the feature tensor on every routing example)
 * and the router trained on them: an MLP (or prototypes) fitted on the train split, early-stopped on the
 * validation split, reported on the held-out split; or the data-free router, built from the factors alone and
 * only reported on the held-out split.
 * @module
 */
import type { IModelProto } from '../../onnx/proto.ts'
import type { RowLayout } from '../graph/row-layout.ts'
import { dataFreePredict, dataFreeRouter } from '../router/data-free-router.ts'
import {
  type BagSpec,
  extractFeatures,
  type Features,
  fitBagIdf,
  fitPairOwners,
  type TokenRouterInputs,
} from '../router/features.ts'
import type { RoutingExample } from '../router/routing-data.ts'
import { type TrainedRouter, trainRouter } from '../router/train-router.ts'
import type { BuildContext } from './build-context.ts'
import type { ExclusiveKnowledge } from './exclusive-knowledge.ts'

export async function trainPackageRouter(
  ctx: BuildContext,
  label: string,
  sharedModel: IModelProto,
  layouts: readonly RowLayout[],
  exclusive: Pick<ExclusiveKnowledge, 'matrices'>,
): Promise<{ router: TrainedRouter; featureSize: number }> {
  const { recipe, split, reporter } = ctx
  let step = reporter.step(
    `${label}: router features`,
    split.train.length + split.validation.length + split.heldout.length,
  )
  let offset = 0
  const tokens = withBagIdf(ctx.routerTokens, split.train)
  const feats = async (examples: RoutingExample[]): Promise<Features> => {
    const f = await extractFeatures(sharedModel, ctx.features, ctx.inputs, examples, {
      layout: layouts,
      tokens,
      dir: ctx.staging,
      onBatch: (d) => step.tick(offset + d),
    })
    offset += examples.length
    return f
  }
  const train = await feats(split.train)
  const validation = await feats(split.validation)
  const heldout = await feats(split.heldout)
  const bag = tokens.bag
  const pooled = `${ctx.recipe.router.pooling === 'masked' ? 'masked ' : ''}'${ctx.features.join("' + '")}'`
  step.done(
    `${train.d}-d ${pooled}${bag ? ` + ${bag.weighting} bag of ${bag.vocab} tokens${bag.bigrams > 0 ? ` and ${bag.bigrams} pair buckets` : ''}` : ''}`,
  )

  step = reporter.step(
    `${label}: router (${recipe.router.kind})`,
    recipe.router.kind === 'mlp' ? recipe.router.epochs * recipe.router.ensemble : undefined,
  )
  if (recipe.router.kind === 'data-free') {
    // Built from the factors alone; the routing data only reports how well it routes.
    const model = dataFreeRouter({
      feature: ctx.feature,
      nodes: sharedModel.graph?.node ?? [],
      sites: ctx.sites,
      matrices: exclusive.matrices,
      experts: ctx.expertNames,
      temperature: recipe.router.temperature,
      // The router's basis is its own tensor: int8 factors' packages store it as float16.
      dtype: recipe.exclusive.dtype === 'float32' ? 'float32' : 'float16',
    })
    const heldoutPredictions = dataFreePredict(model, heldout, ctx.expertNames.length)
    const heldoutAccuracy =
      heldout.y.length === 0
        ? 0
        : heldoutPredictions.filter((p, i) => p === heldout.y[i]).length / heldout.y.length
    step.done(`from '${model.matrix}', held-out accuracy ${(heldoutAccuracy * 100).toFixed(1)}%`)
    return { router: { model, heldoutAccuracy, heldoutPredictions }, featureSize: train.d }
  }
  const router = await trainRouter(
    recipe.router,
    { train, validation, heldout },
    ctx.expertNames.length,
    { onEpoch: (e) => step.tick(e), ...bagRawFrom(train.d, bag) },
  )
  step.done(
    `held-out accuracy ${(router.heldoutAccuracy * 100).toFixed(1)}% on ${heldout.y.length}`,
  )
  // The last `vocab` columns are the bag of tokens: the graph gathers their first-layer rows per token.
  if (bag && router.model.kind === 'mlp') router.model.bag = bagModel(bag)
  if (router.model.kind === 'mlp' && recipe.router.sharpness !== 1)
    router.model.sharpness = recipe.router.sharpness
  // Stored as float16 in the graph; verification's router check bounds what the rounding may flip.
  if (recipe.router.dtype === 'float16' && router.model.kind === 'mlp')
    router.model.dtype = 'float16'
  return { router, featureSize: train.d }
}

/**
 * The token inputs with what the bag fits on the router's training examples: a checked pair table's owners
 * (recipe `bag_bigrams_checked`), then a tf-idf bag's idf over the columns the bag then counts.
 */
export function withBagIdf(
  tokens: TokenRouterInputs,
  train: readonly RoutingExample[],
): TokenRouterInputs {
  let bag = tokens.bag
  if (!bag) return tokens
  if (bag.checked && bag.bigrams > 0) bag = { ...bag, owners: fitPairOwners(train, bag) }
  if (bag.weighting === 'tfidf') bag = { ...bag, idf: fitBagIdf(train, bag) }
  return bag === tokens.bag ? tokens : { ...tokens, bag }
}

/** A tf-idf bag (the last columns of a `d`-wide feature) is not standardised: it is unit-norm per text. */
export function bagRawFrom(d: number, bag: BagSpec | undefined): { rawFrom?: number } {
  return bag?.weighting === 'tfidf' ? { rawFrom: d - bag.vocab - bag.bigrams } : {}
}

/** What the embedded router needs to compute the bag in the graph. */
export function bagModel(bag: BagSpec): BagSpec {
  return {
    vocab: bag.vocab,
    bigrams: bag.bigrams,
    weighting: bag.weighting,
    ...(bag.idf ? { idf: bag.idf } : {}),
    ...(bag.owners ? { owners: bag.owners } : {}),
  }
}
