/**
 * The Gram matrices a `regmean` build of a recipe merges with (pipeline/input-grams.ts), without building a
 * package: for the benchmarks' in-memory static merges (`mergeTensors(…, { grams })`) and for tests that check a
 * built shared model against the published formula.
 * @module
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TensorGrams } from '../merge/types.ts'
import { collectGrams } from './pipeline/input-grams.ts'
import { loadInputs } from './pipeline/load-inputs.ts'
import { createReporter, type Reporter } from './pipeline/progress.ts'

/** Per linear weight (by tensor name), each expert's mean Gram of its inputs on its train-split routing examples. */
export async function recipeGrams(
  recipePath: string,
  reporter: Reporter = createReporter({ quiet: true }),
): Promise<Map<string, TensorGrams>> {
  const staging = await mkdtemp(join(tmpdir(), 'twinserve-grams-'))
  try {
    const ctx = await loadInputs(recipePath, reporter, { staging, externalAbove: 2 ** 31 - 1 })
    return await (await collectGrams(ctx)).toMap()
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}
