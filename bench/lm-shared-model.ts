/**
 * The LM twin's shared model as a plain decoder graph, for the generation benches' _shared_ arm: a scratch build of
 * zoo/lm/recipe.yaml with `shared_file: true` writes it as `variants/shared.onnx` (about 10 s). zoo/lm/package leaves
 * that file out (the zoo's 30 MB budget; its `shared` variant runs the twin graph at all-zero weights, which still
 * computes every factored correction), so a bench that compared the twin with that would compare it with itself.
 * @module
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildPackage, createReporter } from '@twinserve/gpu-runner/build'
import { ArmBuilder, applyChange, readRecipe } from './quality/twin-arms.ts'

/** The bytes of the shared model's plain graph, merged by `recipe`'s `shared` spec. */
export async function lmSharedModel(recipe = join(import.meta.dirname, '../zoo/lm/recipe.yaml')) {
  const builder = await ArmBuilder.open()
  try {
    const { path, out } = await builder.write(
      applyChange(await readRecipe(recipe), { shared_file: true }),
    )
    await buildPackage(path, { out, reporter: createReporter({ quiet: true }) })
    return new Uint8Array(await readFile(join(out, 'variants/shared.onnx')))
  } finally {
    await builder.close()
  }
}
