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
import { GraphEditor } from './graph-editor.ts'

/**
 * The model's bytes with `names` exposed as outputs (intermediates keep their values), each through an Identity
 * under a fresh name (onnxruntime 1.30 crashes returning some intermediates directly, e.g. a Range's output), and
 * declared float unless `elems` gives its ONNX element type (onnxruntime checks every output's type).
 * @returns the bytes and, per name, the output that carries it
 */
export function exposeTensors(
  model: IModelProto,
  names: readonly string[],
  elems?: ReadonlyMap<string, number>,
): { bytes: Uint8Array; outputs: Map<string, string> } {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
  const graph = copy.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'model has no graph')
  const known = new Set<string>()
  for (const n of graph.node ?? []) for (const o of n.output ?? []) known.add(o)
  for (const i of graph.input ?? []) known.add(i.name ?? '')
  const editor = new GraphEditor(graph, 'probe/')
  const outputs = new Map<string, string>()
  for (const name of names) {
    if (!known.has(name))
      throw new AppError(
        'INVALID_REQUEST',
        `tensor '${name}' is not produced by any node or input of the model`,
      )
    if (outputs.has(name)) continue
    const out = editor.node('Identity', [name], { hint: name })
    // Only the element type is declared: ORT infers the shape, and a wrong guess would fail loudly.
    const v = valueInfo(out, 'float', [])
    if (v.type?.tensorType) {
      v.type.tensorType.shape = null
      v.type.tensorType.elemType = elems?.get(name) ?? v.type.tensorType.elemType
    }
    graph.output = [...(graph.output ?? []), v]
    outputs.set(name, out)
  }
  return { bytes: onnx.ModelProto.encode(copy).finish(), outputs }
}

/** A session on the model with `names` exposed, run on feeds; returns the named tensors. */
export class TensorProbe {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly outputs: ReadonlyMap<string, string>,
  ) {}

  static async open(
    model: IModelProto,
    names: readonly string[],
    elems?: ReadonlyMap<string, number>,
  ): Promise<TensorProbe> {
    const exposed = exposeTensors(model, names, elems)
    const { session } = await openSession(exposed.bytes, { provider: 'cpu' })
    return new TensorProbe(session, exposed.outputs)
  }

  async run(
    feeds: Record<string, ort.Tensor>,
    names: readonly string[],
  ): Promise<Map<string, ort.Tensor>> {
    const fetch = names.map((n) => this.outputs.get(n) ?? n)
    const out = await this.session.run(feeds, fetch)
    const map = new Map<string, ort.Tensor>()
    names.forEach((name, i) => {
      const t = out[fetch[i] as string]
      if (!t) throw new AppError('INTERNAL', `probe: onnxruntime returned no '${name}'`)
      map.set(name, t)
    })
    return map
  }

  async release(): Promise<void> {
    await this.session.release()
  }
}
