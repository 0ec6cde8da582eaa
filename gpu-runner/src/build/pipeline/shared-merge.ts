/**
 * Build step 2 (and each variant's merge): a merge strategy over every float tensor of the experts, one tensor
 * at a time, through the merge engine.
 * @module
 */
import type { MergeSpec } from '@twinserve/shared'
import { mergeTensor } from '../../merge/index.ts'
import { type OnnxModel, tensorDims } from '../import/read-onnx.ts'
import type { BuildContext } from './build-context.ts'

/** The float tensors to merge: the base's (by name), and each expert's in order with its name. */
export interface MergeInputs {
  base: OnnxModel
  baseValues: ReadonlyMap<string, Float32Array>
  experts: readonly ReadonlyMap<string, Float32Array>[]
  names: readonly string[]
}

/** θ merged per tensor by `spec`. */
export function mergeTensors(
  inputs: MergeInputs,
  spec: MergeSpec,
  onTensor?: (done: number, total: number) => void,
): Map<string, Float32Array> {
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
      }),
    )
    onTensor?.(out.size, inputs.baseValues.size)
  }
  return out
}

/** θ merged per tensor by `spec`, with progress under `label`. */
export function mergeAll(
  ctx: BuildContext,
  spec: MergeSpec,
  label: string,
): Map<string, Float32Array> {
  const step = ctx.reporter.step(label, ctx.baseValues.size)
  const { base, baseValues, expertValues: experts, expertNames: names } = ctx
  const out = mergeTensors({ base, baseValues, experts, names }, spec, (d, t) => step.tick(d, t))
  step.done()
  return out
}
