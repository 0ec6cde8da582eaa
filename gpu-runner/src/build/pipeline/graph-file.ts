/**
 * A package graph's bytes: the model with Twinserve's metadata (package, experts, which graph it is) and producer.
 * @module
 */
import type { IModelProto } from '../../onnx/proto.ts'
import { onnx } from '../../onnx/proto.ts'
import type { BuildContext } from './build-context.ts'

/** The twin graph's bytes, or with `variant` a variant's. */
export function encodeGraph(ctx: BuildContext, model: IModelProto, variant?: string): Uint8Array {
  const metadata: Record<string, string> = {
    'twinserve.package': ctx.recipe.name,
    'twinserve.experts': JSON.stringify(ctx.expertNames),
    'twinserve.graph': variant === undefined ? 'twin' : `variant:${variant}`,
  }
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
  const props = (copy.metadataProps ?? []).filter((p) => !(p.key ?? '').startsWith('twinserve.'))
  copy.metadataProps = [
    ...props,
    ...Object.entries(metadata).map(([key, value]) => ({ key, value })),
  ]
  copy.producerName = 'twinserve build'
  return onnx.ModelProto.encode(copy).finish()
}
