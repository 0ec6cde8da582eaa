/**
 * Build step 2 (and each variant's merge), streamed as mergekit's lazy loader does: for one float tensor at a time,
 * read it from the base and every expert, merge it with the recipe's strategy (merge engine), hand it to the
 * exclusive-knowledge collector when it carries exclusive knowledge, and write it into the merged model's file
 * before the next tensor is read. Peak memory is one tensor of every model, not every model.
 * @module
 */
import { AppError, type MergeSpec } from '@twinserve/shared'
import { mergeTensor, type TensorGrams } from '../../merge/index.ts'
import type { ModelProto } from '../../onnx/proto.ts'
import { type OnnxModel, tensorDims } from '../import/read-onnx.ts'
import { floatBytes, readFloat32 } from '../import/tensor-data.ts'
import { roundToFloat16, storedAsFloat16 } from '../twin-graph/shared-float16.ts'
import type { BuildContext } from './build-context.ts'
import {
  ExclusiveCollector as Collector,
  type ExclusiveCollector,
  notSelectedReason,
  type SharedOnlyRow,
  sharedOnlyRow,
} from './exclusive-knowledge.ts'
import { writeGraph } from './graph-file.ts'
import { gramsOf } from './input-grams.ts'
import type { WrittenFile } from './write-model.ts'

/** The float tensors to merge, in memory: the base's (by name), and each expert's in order with its name. */
export interface MergeInputs {
  base: OnnxModel
  baseValues: ReadonlyMap<string, Float32Array>
  experts: readonly ReadonlyMap<string, Float32Array>[]
  names: readonly string[]
}

/**
 * θ merged per tensor by `spec`, from values in memory (bench:quality's static merges of small zoos). `regmean`
 * needs `grams` (recipeGrams): without them every tensor would silently be averaged, so that is refused.
 */
export function mergeTensors(
  inputs: MergeInputs,
  spec: MergeSpec,
  onTensor?: (done: number, total: number) => void,
  grams?: ReadonlyMap<string, TensorGrams>,
): Map<string, Float32Array> {
  if (spec.method === 'regmean' && !grams)
    throw new AppError(
      'INVALID_REQUEST',
      "regmean needs each linear weight's input Gram matrices (recipeGrams); none were given",
    )
  const out = new Map<string, Float32Array>()
  for (const [name, b] of inputs.baseValues) {
    const t = inputs.base.initializers.get(name)
    out.set(
      name,
      mergeTensor(spec, {
        base: b,
        experts: inputs.experts.map((e) => e.get(name) as Float32Array),
        names: inputs.names,
        shape: t ? tensorDims(t) : [b.length],
        tensorName: name,
        ...(spec.method === 'regmean' && grams?.has(name) ? { grams: grams.get(name) } : {}),
      }),
    )
    onTensor?.(out.size, inputs.baseValues.size)
  }
  return out
}

export interface MergedModel {
  /** The merged model as a skeleton pointing into its file. */
  model: ModelProto
  files: WrittenFile[]
  /** The experts' exclusive knowledge against this merge, when asked for. */
  exclusive?: ExclusiveCollector['knowledge']
  /** With exclusive knowledge: the tensors the experts changed that carry none (each expert gets this merge's). */
  sharedOnly?: SharedOnlyRow[]
}

/**
 * Merges every float tensor by `spec` into the file `rel` (relative to the staging directory), tensor by tensor.
 * @param variant the name written into the file's metadata (`variant:<name>`)
 * @param exclusive also collect the exclusive knowledge of the selected tensors against this merge
 */
export async function mergeToFile(
  ctx: BuildContext,
  spec: MergeSpec,
  label: string,
  out: { rel: string; variant: string },
  exclusive: boolean,
): Promise<MergedModel> {
  const floats = [...ctx.base.initializers.values()].filter((t) => t.dataType === 1)
  const step = ctx.reporter.step(label, floats.length)
  const collector = exclusive
    ? new Collector(ctx.selected, ctx.recipe.exclusive, ctx.experts.length, ctx.expertsBytes)
    : undefined
  const sharedOnly: SharedOnlyRow[] = []
  const half = exclusive && ctx.recipe.shared_dtype === 'float16'
  const grams = spec.method === 'regmean' ? await gramsOf(ctx) : undefined
  let done = 0
  const written = await writeGraph(ctx, out.rel, ctx.base.model, out.variant, async (t) => {
    const name = t.name ?? ''
    const base = await readFloat32(t, `${ctx.base.path}: ${name}`)
    const experts: Float32Array[] = []
    for (const e of ctx.experts) {
      const et = e.initializers.get(name)
      experts.push(await readFloat32(et ?? {}, `${e.path}: ${name}`))
    }
    const tensorGrams = await grams?.read(name)
    const exact = mergeTensor(spec, {
      base,
      experts,
      names: ctx.expertNames,
      shape: tensorDims(t),
      tensorName: name,
      ...(tensorGrams ? { grams: tensorGrams } : {}),
    })
    // Rounded before the exclusive knowledge is taken against it (twin-graph/shared-float16.ts).
    const merged = half && storedAsFloat16(tensorDims(t)) ? roundToFloat16(exact) : exact
    if (collector?.has(name)) await collector.add(name, merged, experts)
    else if (collector) {
      const site = { name, shape: tensorDims(t), reason: notSelectedReason(ctx.sites.get(name)) }
      const row = sharedOnlyRow(site, merged, experts)
      if (row) sharedOnly.push(row)
    }
    step.tick(++done, floats.length)
    return floatBytes(merged)
  })
  const knowledge = collector?.finish()
  step.done(
    knowledge
      ? `${knowledge.matrices.length} matrices (Σ rank ${knowledge.matrices.reduce((a, m) => a + m.sigma.length, 0)}), ${knowledge.vectors.length} vectors of exclusive knowledge`
      : undefined,
  )
  return {
    model: written.skeleton,
    files: written.files,
    ...(knowledge ? { exclusive: knowledge, sharedOnly } : {}),
  }
}
