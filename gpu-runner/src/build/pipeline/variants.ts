/**
 * Build step: the package's static variants, plain graphs served as A/B arms: `shared` (the recipe's shared
 * merge, unless `shared_file: false`), then each recipe variant, a static merge alone or that merge plus the
 * experts' exclusive knowledge weighted by a router trained on its features.
 * @module
 */
import { rm } from 'node:fs/promises'
import { SHARED_VARIANT } from '@twinserve/shared'
import type { BuildContext } from './build-context.ts'
import { mergeToFile } from './shared-merge.ts'
import { buildTwinModel } from './twin-model.ts'
import type { WrittenFile } from './write-model.ts'

export interface VariantReport {
  name: string
  description: string
  exclusive: boolean
  heldoutAccuracy?: number
}

export const variantFile = (name: string) => `variants/${name}.onnx`

export interface BuiltVariants {
  /** Package files written, by path relative to the staging directory. */
  files: WrittenFile[]
  variants: VariantReport[]
}

/**
 * Every recipe variant, written into the staging directory beside the `shared` variant (already written by the
 * shared merge when the recipe keeps its file). A variant with exclusive knowledge merges into a scratch file
 * first, which its twin graph is then written from.
 */
export async function buildVariants(ctx: BuildContext): Promise<BuiltVariants> {
  const { recipe } = ctx
  const files: WrittenFile[] = []
  const variants: VariantReport[] = []
  if (recipe.shared_file)
    variants.push({
      name: SHARED_VARIANT,
      description: `shared model only (${recipe.shared.method}), no exclusive knowledge`,
      exclusive: false,
    })
  for (const v of recipe.variants) {
    const label = `variant '${v.name}' (${v.shared.method})`
    if (!v.exclusive) {
      const merged = await mergeToFile(
        ctx,
        v.shared,
        label,
        { rel: variantFile(v.name), variant: v.name },
        false,
      )
      files.push(...merged.files)
      variants.push({
        name: v.name,
        description: v.description ?? `static ${v.shared.method} merge`,
        exclusive: false,
      })
      continue
    }
    const scratch = scratchFile(`variant-${v.name}`)
    const merged = await mergeToFile(ctx, v.shared, label, { rel: scratch, variant: v.name }, true)
    const built = await buildTwinModel(
      ctx,
      v.name,
      {
        model: merged.model,
        exclusive: merged.exclusive ?? { matrices: [], vectors: [], rows: [] },
      },
      'router',
      variantFile(v.name),
    )
    await removeFiles(merged.files)
    files.push(...built.files)
    variants.push({
      name: v.name,
      description:
        v.description ?? `${v.shared.method} merge + exclusive knowledge, routed (dense)`,
      exclusive: true,
      heldoutAccuracy: built.router.heldoutAccuracy,
    })
  }
  return { files, variants }
}

/** A scratch model's path in the staging directory (dot-named; removed before the package is renamed into place). */
export const scratchFile = (name: string) => `.${name}.onnx`

export async function removeFiles(files: readonly WrittenFile[]): Promise<void> {
  for (const f of files) await rm(f.path, { force: true })
}
