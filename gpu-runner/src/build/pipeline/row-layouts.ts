/**
 * Build step: where the batch is in every tensor of the shared model (graph/batch-axes.ts), so that the rewrite
 * can broadcast per-row weights to each corrected node's output and the router can pool its feature per row.
 * One probe run on routing examples gives the dims that depend on tensor values (a Reshape's target, …).
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { TensorDataType } from '../../onnx/proto.ts'
import type { ort } from '../../runtime/ort-session.ts'
import { type GraphInputInfo, probeList, trackBatch } from '../graph/batch-axes.ts'
import { defaultOpset } from '../graph/ops.ts'
import { TensorProbe } from '../graph/probe.ts'
import { layoutOf, type TensorLayout } from '../graph/row-layout.ts'
import type { TensorInfo } from '../graph/tensor-atoms.ts'
import { batchDim, fixedBatch, type IoTensor, stackExamples } from '../import/model-io.ts'
import type { RoutingExample } from '../router/routing-data.ts'

/** Every tensor's layout; `get` throws, naming the tensor, where its batch axis cannot be tracked. */
export interface BatchLayouts {
  get(tensor: string): TensorLayout
}

const ELEM: Record<IoTensor['elem'], number> = {
  float: TensorDataType.FLOAT,
  int64: TensorDataType.INT64,
  int32: TensorDataType.INT32,
  bool: TensorDataType.BOOL,
  double: TensorDataType.DOUBLE,
}

/** Probe feeds: the first `batch` routing examples of one shape (repeated when there are fewer). */
export function probeFeeds(
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

/** The graph inputs as the batch tracking starts from them: probe dims, declared sizes, which carry the batch. */
function inputInfos(
  inputs: readonly IoTensor[],
  feeds: Record<string, ort.Tensor>,
): GraphInputInfo[] {
  const b = batchDim(inputs)
  return inputs.map((i) => ({
    name: i.name,
    dims: [...(feeds[i.name]?.dims ?? [])],
    fixed: i.dims.map((d) => typeof d === 'number'),
    batch: i.dims.length > 0 && (i.dims[0] === b || (i.dims[0] === '?' && b === 'batch')),
    elem: ELEM[i.elem],
  }))
}

/** Tracks the batch through `model` from one probe run on `feeds` (a batch of more than one row). */
export async function trackRows(
  model: IModelProto,
  inputs: readonly IoTensor[],
  feeds: Record<string, ort.Tensor>,
  dir?: string,
): Promise<{ infos: Map<string, TensorInfo>; layouts: BatchLayouts }> {
  const graph = model.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'the shared model has no graph')
  const opset = defaultOpset(model)
  const ins = inputInfos(inputs, feeds)
  const list = probeList(graph, { inputs: ins, opset })
  const probed = new Map<string, number[]>()
  if (list.length > 0) {
    const names = list.map((x) => x.name)
    const elems = new Map(list.map((x) => [x.name, x.elem]))
    const probe = await TensorProbe.open(model, names, elems, dir)
    try {
      for (const [name, t] of await probe.run(feeds, names)) probed.set(name, [...t.dims])
    } finally {
      await probe.release()
    }
  }
  const infos = trackBatch(graph, { inputs: ins, opset, probed })
  return { infos, layouts: { get: (tensor) => layoutOf(tensor, infos.get(tensor)) } }
}

/** The batch layouts of the shared model, probed on the first routing examples (batch 3 unless fixed). */
export function trackRoutingRows(
  model: IModelProto,
  inputs: readonly IoTensor[],
  examples: readonly RoutingExample[],
  dir: string,
) {
  return trackRows(model, inputs, probeFeeds(inputs, examples, fixedBatch(inputs) ?? 3), dir)
}
