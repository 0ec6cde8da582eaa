/**
 * Runs a model with some of its intermediate tensors exposed as outputs: to learn their shapes (how each
 * rewritten node's output lines up with the batch) and to read the router's features from the shared model.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { valueInfo } from '../../onnx/graph-builder.ts'
import type { IModelProto } from '../../onnx/proto.ts'
import { onnx } from '../../onnx/proto.ts'
import { openSession, type ort } from '../../runtime/ort-session.ts'
import type { RowLayout } from '../twin-graph/rewrite.ts'

/** The model's bytes with `names` added as float outputs (intermediates keep their values). */
export function exposeTensors(model: IModelProto, names: readonly string[]): Uint8Array {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
  const graph = copy.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'model has no graph')
  const known = new Set<string>()
  for (const n of graph.node ?? []) for (const o of n.output ?? []) known.add(o)
  for (const i of graph.input ?? []) known.add(i.name ?? '')
  const present = new Set((graph.output ?? []).map((o) => o.name ?? ''))
  for (const name of names) {
    if (!known.has(name))
      throw new AppError(
        'INVALID_REQUEST',
        `tensor '${name}' is not produced by any node or input of the model`,
      )
    if (!present.has(name)) {
      // Only the element type is declared: ORT infers the shape, and a wrong guess would fail loudly.
      const v = valueInfo(name, 'float', [])
      if (v.type?.tensorType) v.type.tensorType.shape = null
      graph.output = [...(graph.output ?? []), v]
      present.add(name)
    }
  }
  return onnx.ModelProto.encode(copy).finish()
}

/** A session on the model with `names` exposed, run on feeds; returns the named tensors. */
export class TensorProbe {
  private constructor(private readonly session: ort.InferenceSession) {}

  static async open(model: IModelProto, names: readonly string[]): Promise<TensorProbe> {
    const { session } = await openSession(exposeTensors(model, names), { provider: 'cpu' })
    return new TensorProbe(session)
  }

  async run(
    feeds: Record<string, ort.Tensor>,
    names: readonly string[],
  ): Promise<Map<string, ort.Tensor>> {
    const out = await this.session.run(feeds, [...names])
    const map = new Map<string, ort.Tensor>()
    for (const name of names) {
      const t = out[name]
      if (!t) throw new AppError('INTERNAL', `probe: onnxruntime returned no '${name}'`)
      map.set(name, t)
    }
    return map
  }

  async release(): Promise<void> {
    await this.session.release()
  }
}

/**
 * Infers how each tensor's leading axis relates to the batch from its dims at two batch sizes: `lead` when it
 * is the batch, `flat` when it is batch × k for a rank-2 tensor (rows flattened from [batch, seq, d]).
 */
export function rowLayout(
  name: string,
  runs: readonly { batch: number; dims: readonly number[] }[],
): RowLayout {
  const first = runs[0]
  if (!first) throw new AppError('INTERNAL', 'rowLayout needs at least one probe run')
  const rank = first.dims.length
  const fail = (why: string) =>
    new AppError(
      'INVALID_MODEL',
      `tensor '${name}' (dims [${first.dims.join(',')}] at batch ${first.batch}) ${why}; exclude the tensors that feed it from exclusive knowledge, or route from another feature`,
    )
  if (rank < 2) throw fail('has no batch axis')
  if (runs.every((r) => r.dims.length === rank && r.dims[0] === r.batch))
    return { rank, mode: 'lead' }
  const k = (first.dims[0] ?? 0) / first.batch
  if (rank === 2 && Number.isInteger(k) && k > 0 && runs.every((r) => r.dims[0] === r.batch * k))
    return { rank: 2, mode: 'flat' }
  throw fail('does not have the batch as its leading axis')
}
