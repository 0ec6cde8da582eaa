/**
 * Build step: how each corrected node's output and the router feature line up with the batch, learnt by running
 * the shared model at two batch sizes (one, when the model fixes its batch) on routing examples.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { TensorProbe } from '../graph/probe.ts'
import { type RowLayout, rowLayout } from '../graph/row-layout.ts'
import { fixedBatch, type IoTensor, stackExamples } from '../import/model-io.ts'
import type { RoutingExample } from '../router/routing-data.ts'
import type { BuildContext } from './build-context.ts'

/** Probe feeds: the first `batch` routing examples (or as many as there are, repeated). */
function probeFeeds(
  inputs: readonly IoTensor[],
  examples: readonly RoutingExample[],
  batch: number,
) {
  const first = examples[0]
  if (!first) throw new AppError('INVALID_REQUEST', 'router data is empty')
  const key = (e: RoutingExample) =>
    Object.values(e.inputs)
      .map((v) => v.length)
      .join(',')
  const same = examples.filter((e) => key(e) === key(first))
  const rows = Array.from(
    { length: batch },
    (_, i) => (same[i % same.length] as RoutingExample).inputs,
  )
  return stackExamples(inputs, rows, 'router data')
}

/** The row layout of each named tensor of `sharedModel`. */
export async function probeRowLayouts(
  ctx: BuildContext,
  sharedModel: IModelProto,
  names: readonly string[],
): Promise<Map<string, RowLayout>> {
  const fixed = fixedBatch(ctx.inputs)
  const batches = fixed === undefined ? [3, 5] : [fixed]
  const probe = await TensorProbe.open(sharedModel, names)
  const layouts = new Map<string, RowLayout>()
  try {
    const runs = []
    for (const b of batches)
      runs.push({
        batch: b,
        out: await probe.run(probeFeeds(ctx.inputs, ctx.split.train, b), names),
      })
    for (const n of names)
      layouts.set(
        n,
        rowLayout(
          n,
          runs.map((r) => ({ batch: r.batch, dims: r.out.get(n)?.dims ?? [] })),
        ),
      )
  } finally {
    await probe.release()
  }
  return layouts
}
