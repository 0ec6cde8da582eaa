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
