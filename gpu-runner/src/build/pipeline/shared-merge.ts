/**
 * Build step 2 (and each variant's merge): a merge strategy over every float tensor of the experts, one tensor
 * at a time, through the merge engine.
 * @module
 */
import type { MergeSpec } from '@twinserve/shared'
import { mergeTensor } from '../../merge/index.ts'
import { tensorDims } from '../import/read-onnx.ts'
import type { BuildContext } from './build-context.ts'

/** θ merged per tensor by `spec`, with progress under `label`. */
export function mergeAll(
  ctx: BuildContext,
  spec: MergeSpec,
  label: string,
): Map<string, Float32Array> {
  const step = ctx.reporter.step(label, ctx.baseValues.size)
  const out = new Map<string, Float32Array>()
  let done = 0
  for (const [name, b] of ctx.baseValues) {
    const t = ctx.base.initializers.get(name)
    out.set(
      name,
      mergeTensor(spec, {
        base: b,
        experts: ctx.expertValues.map((e) => e.get(name) as Float32Array),
        names: ctx.expertNames,
        shape: t ? tensorDims(t) : [b.length],
        tensorName: name,
      }),
    )
    step.tick(++done, ctx.baseValues.size)
  }
  step.done()
  return out
}
