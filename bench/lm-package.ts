/**
 * What the LM benches read from a twin package's manifest beyond its typed fields.
 * @module
 */

/** The recipe's `exclusive.topk_gather` as the manifest records it (the manifest keeps the recipe untyped). */
export const gatherOf = (recipe: unknown): number | undefined =>
  (recipe as { exclusive?: { topk_gather?: number } } | undefined)?.exclusive?.topk_gather
