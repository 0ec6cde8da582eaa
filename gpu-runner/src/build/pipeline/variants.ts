/**
 * Build step: the package's static variants, plain graphs served as A/B arms: `shared` (the recipe's shared
 * merge, unless `shared_file: false`), then each recipe variant, a static merge alone or that merge plus the
 * experts' exclusive knowledge weighted by a router trained on its features.
 * @module
 */
import { SHARED_VARIANT } from '@twinserve/shared'
import { withFloatInitializers } from '../import/read-onnx.ts'
import type { BuildContext } from './build-context.ts'
import { encodeGraph } from './graph-file.ts'
import { mergeAll } from './shared-merge.ts'
import { buildTwinModel } from './twin-model.ts'

export interface VariantReport {
  name: string
  description: string
  exclusive: boolean
  heldoutAccuracy?: number
}

export const variantFile = (name: string) => `variants/${name}.onnx`

export interface BuiltVariants {
  /** Package files by relative path. */
  files: Record<string, Uint8Array>
  variants: VariantReport[]
}

/**
 * @param sharedBytes the shared model as a plain graph: written as the `shared` variant file, or (shared_file:
 * false) kept only to verify the twin graph at zero weights against, since the runner then serves `shared` from
 * the twin graph
 */
export async function buildVariants(
  ctx: BuildContext,
  sharedBytes: Uint8Array,
): Promise<BuiltVariants> {
  const { recipe } = ctx
  const files: Record<string, Uint8Array> = {}
  const variants: VariantReport[] = []
  if (recipe.shared_file) {
    files[variantFile(SHARED_VARIANT)] = sharedBytes
    variants.push({
      name: SHARED_VARIANT,
      description: `shared model only (${recipe.shared.method}), no exclusive knowledge`,
      exclusive: false,
    })
  }
  for (const v of recipe.variants) {
    const merged = mergeAll(ctx, v.shared, `variant '${v.name}' (${v.shared.method})`)
    if (!v.exclusive) {
      files[variantFile(v.name)] = encodeGraph(
        ctx,
        withFloatInitializers(ctx.base.model, merged),
        v.name,
      )
      variants.push({
        name: v.name,
        description: v.description ?? `static ${v.shared.method} merge`,
        exclusive: false,
      })
      continue
    }
    const built = await buildTwinModel(ctx, v.name, merged, 'router')
    files[variantFile(v.name)] = built.bytes
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
