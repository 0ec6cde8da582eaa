/**
 * A package graph's file: the model with Twinserve's metadata (package, experts, which graph it is) and producer,
 * written tensor by tensor into the staging directory (write-model.ts).
 * @module
 */
import { join } from 'node:path'
import type { ModelProto } from '../../onnx/proto.ts'
import { onnx } from '../../onnx/proto.ts'
import type { BuildContext } from './build-context.ts'
import { type WriteModelOptions, type WrittenModel, writeModel } from './write-model.ts'

/** A shallow copy of `model` with the package metadata; `variant` names a variant graph (else the twin graph). */
export function withMetadata(ctx: BuildContext, model: ModelProto, variant?: string): ModelProto {
  const metadata: Record<string, string> = {
    'twinserve.package': ctx.recipe.name,
    'twinserve.experts': JSON.stringify(ctx.expertNames),
    'twinserve.graph': variant === undefined ? 'twin' : `variant:${variant}`,
  }
  const props = (model.metadataProps ?? []).filter((p) => !(p.key ?? '').startsWith('twinserve.'))
  const copy = onnx.ModelProto.fromObject({}) as ModelProto
  Object.assign(copy, model, {
    metadataProps: [...props, ...Object.entries(metadata).map(([key, value]) => ({ key, value }))],
    producerName: 'twinserve build',
  })
  return copy
}

/**
 * Writes a package graph at `rel` (relative to the staging directory), with its metadata.
 * @param variant the variant's name, or undefined for the twin graph
 */
export function writeGraph(
  ctx: BuildContext,
  rel: string,
  model: ModelProto,
  variant: string | undefined,
  valueFor?: WriteModelOptions['valueFor'],
): Promise<WrittenModel> {
  return writeModel(join(ctx.staging, rel), withMetadata(ctx, model, variant), {
    externalAbove: ctx.externalAbove,
    ...(valueFor ? { valueFor } : {}),
  })
}
