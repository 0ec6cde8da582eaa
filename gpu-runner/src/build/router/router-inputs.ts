/**
 * What the router reads, from the recipe: the feature tensors (one or a list) and, for text models, the attention
 * mask it pools by (`router.pooling: masked`) and the ids it counts (`router.bag_of_tokens`), with the vocabulary
 * size read from the package tokenizer's `tokenizer.json`, or for a model without a tokenizer block (a decoder
 * LM) all three from `router.token_inputs`.
 * @module
 */
import { AppError, type Recipe } from '@twinserve/shared'
import type { TokenRouterInputs } from './features.ts'

/** The recipe's router feature(s) as a list, or `fallback` (the builder's default tensor) when it names none. */
export function routerFeatureList(
  recipe: Pick<Recipe, 'router'>,
  fallback: () => string,
): string[] {
  const f = recipe.router.feature
  return f === undefined ? [fallback()] : typeof f === 'string' ? [f] : [...f]
}

/** Number of ids a Hugging Face `tokenizer.json` can produce: its model vocabulary and its added tokens. */
export function tokenizerVocabSize(json: Uint8Array): number {
  let parsed: {
    model?: { vocab?: unknown }
    added_tokens?: { id?: number }[]
  }
  try {
    parsed = JSON.parse(Buffer.from(json).toString('utf8'))
  } catch (err) {
    throw new AppError('INVALID_REQUEST', 'recipe tokenizer file is not JSON', { cause: err })
  }
  const vocab = parsed.model?.vocab
  let size = 0
  if (Array.isArray(vocab)) size = vocab.length
  else if (vocab && typeof vocab === 'object')
    for (const id of Object.values(vocab)) if (typeof id === 'number') size = Math.max(size, id + 1)
  for (const t of parsed.added_tokens ?? [])
    if (typeof t.id === 'number') size = Math.max(size, t.id + 1)
  if (size === 0)
    throw new AppError(
      'INVALID_REQUEST',
      'router.bag_of_tokens: the tokenizer file has no vocabulary (model.vocab) to count ids over',
    )
  return size
}

/** The token inputs the recipe's router reads (none for `pooling: mean` without a bag of tokens). */
export function tokenRouterInputs(
  recipe: Pick<Recipe, 'router' | 'tokenizer'>,
  tokenizerJson: Uint8Array | undefined,
  /** The model's inputs, to check the names `router.token_inputs` gives. */
  inputs?: readonly { name: string }[],
): TokenRouterInputs {
  const { router, tokenizer } = recipe
  if (router.pooling === 'mean' && !router.bag_of_tokens) return {}
  const given = router.token_inputs
  if (!tokenizer && given) {
    const names = inputs?.map((i) => i.name)
    for (const n of [given.ids_input, given.mask_input])
      if (names && !names.includes(n))
        throw new AppError(
          'INVALID_REQUEST',
          `router.token_inputs: '${n}' is not an input of the model (inputs: ${names.join(', ')})`,
        )
    return {
      ...(router.pooling === 'masked' ? { mask: given.mask_input } : {}),
      ...(router.bag_of_tokens
        ? {
            bag: {
              ids: given.ids_input,
              mask: given.mask_input,
              vocab: given.vocab,
              bigrams: router.bag_bigrams,
              weighting: router.bag_weighting,
              ...(router.bag_bigrams_checked ? { checked: true } : {}),
            },
          }
        : {}),
    }
  }
  if (!tokenizer || !tokenizerJson)
    throw new AppError(
      'INVALID_REQUEST',
      'router.pooling masked and router.bag_of_tokens read the token inputs: the recipe needs a tokenizer block (or router.token_inputs)',
    )
  return {
    ...(router.pooling === 'masked' ? { mask: tokenizer.mask_input } : {}),
    ...(router.bag_of_tokens
      ? {
          bag: {
            ids: tokenizer.ids_input,
            mask: tokenizer.mask_input,
            vocab: tokenizerVocabSize(tokenizerJson),
            bigrams: router.bag_bigrams,
            weighting: router.bag_weighting,
            ...(router.bag_bigrams_checked ? { checked: true } : {}),
          },
        }
      : {}),
  }
}
