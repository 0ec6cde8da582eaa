/**
 * Build step: the package manifest (without the file hashes, which finishPackage adds from the writers').
 * @module
 */
import {
  PACKAGE_FORMAT,
  PACKAGE_FORMAT_VERSION,
  type PackageManifest,
  type PackageTokenizer,
} from '@twinserve/shared'
import { promptBagFile, trainPromptBag } from '../../generate/prompt-bag.ts'
import type { ManifestWithoutFiles } from '../../package/write-package.ts'
import { toMetadata } from '../import/model-io.ts'
import type { BuildContext } from './build-context.ts'
import type { TwinModel } from './twin-model.ts'
import { type VariantReport, variantFile } from './variants.ts'

export const MODEL_FILE = 'model.onnx'

export function packageManifest(
  ctx: BuildContext,
  twin: TwinModel,
  variants: readonly VariantReport[],
  tokenizer?: PackageTokenizer,
): ManifestWithoutFiles {
  const { recipe } = ctx
  return {
    format: PACKAGE_FORMAT,
    formatVersion: PACKAGE_FORMAT_VERSION,
    name: recipe.name,
    createdAt: new Date().toISOString(),
    experts: recipe.experts.map((e, index) => ({
      name: e.name,
      index,
      ...(e.labels ? { labels: e.labels } : {}),
    })),
    inputs: ctx.inputs.map(toMetadata),
    outputs: ctx.outputs.map(toMetadata),
    model: { file: MODEL_FILE },
    ...(tokenizer ? { tokenizer } : {}),
    router: {
      kind: recipe.router.kind,
      feature: ctx.feature,
      ...(ctx.features.length > 1 ? { features: ctx.features } : {}),
      ...(ctx.recipe.router.pooling !== 'mean' ? { pooling: ctx.recipe.router.pooling } : {}),
      ...(ctx.recipe.router.bag_of_tokens ? { bagOfTokens: true } : {}),
      ...(ctx.recipe.router.bag_weighting !== 'mean'
        ? { bagWeighting: ctx.recipe.router.bag_weighting }
        : {}),
      ...(ctx.recipe.router.bag_bigrams > 0 ? { bagBigrams: ctx.recipe.router.bag_bigrams } : {}),
      ...(ctx.recipe.router.bag_bigrams_checked ? { bagBigramsChecked: true as const } : {}),
      featureSize: twin.featureSize,
      heldoutAccuracy: twin.router.heldoutAccuracy,
      ...(recipe.router.abstain_below !== undefined
        ? { abstainBelow: recipe.router.abstain_below }
        : {}),
      ...(recipe.router.prompt_likelihood
        ? { promptLikelihood: promptLikelihoodOf(ctx, recipe.router.prompt_likelihood) }
        : {}),
    },
    // A matrix kept at rank 0 for every expert carries nothing; it is reported, not listed.
    exclusive: twin.exclusive.rows
      .filter((r) => r.kind === 'vector' || (r.ranks ?? []).some((k) => k > 0))
      .map((r) => ({
        name: r.name,
        kind: r.kind,
        shape: r.shape,
        ...(r.ranks ? { ranks: r.ranks } : {}),
        relError: r.relError,
        ...(r.basis ? { basis: r.basis } : {}),
      })),
    variants: variants.map((v) => ({
      name: v.name,
      file: variantFile(v.name),
      description: v.description,
      exclusive: v.exclusive,
    })),
    recipe,
  }
}

type RecipePromptLikelihood = NonNullable<BuildContext['recipe']['router']['prompt_likelihood']>

/** The recipe's `router.prompt_likelihood` as the manifest carries it (only the levers it sets). */
function promptLikelihoodOf(
  ctx: BuildContext,
  p: RecipePromptLikelihood,
): NonNullable<PackageManifest['router']['promptLikelihood']> {
  return {
    temperature: p.temperature,
    ...(p.per_token ? { perToken: true } : {}),
    ...(p.log_prior ? { logPrior: p.log_prior } : {}),
    ...(p.router_weight ? { routerWeight: p.router_weight } : {}),
    ...(p.hard_above !== undefined ? { hardAbove: p.hard_above } : {}),
    ...(p.router_above !== undefined ? { routerAbove: p.router_above } : {}),
    ...(p.bag
      ? { bag: { skipAbove: p.bag.skip_above, ...promptBagFile(trainBag(ctx, p.bag)) } }
      : {}),
  }
}

/**
 * The prompt classifier, trained on every routing example (it is not the graph's router: the held-out split
 * reports that one), in a fixed order (train, validation, held-out: the split is seeded) so that a rebuild gives
 * the same weights. Each example's prompt is its `input_ids` with the attention mask's zeros left out.
 */
function trainBag(
  ctx: BuildContext,
  bag: NonNullable<RecipePromptLikelihood['bag']>,
): ReturnType<typeof trainPromptBag> {
  const { train, validation, heldout } = ctx.split
  const examples = [...train, ...validation, ...heldout].map((x) => {
    const ids = x.inputs.input_ids ?? []
    const mask = x.inputs.attention_mask
    return { ids: mask ? ids.filter((_, i) => mask[i] !== 0) : ids, y: x.expert }
  })
  return trainPromptBag(examples, ctx.expertNames.length, { bigrams: bag.bigrams }, bag)
}
