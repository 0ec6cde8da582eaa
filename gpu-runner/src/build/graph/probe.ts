/**
 * Runs a model with some of its intermediate tensors exposed as outputs: to learn their shapes (how each
 * rewritten node's output lines up with the batch) and to read the router's features from the shared model.
 * @module
 */
import { randomBytes } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { isAbsolute, join, relative } from 'node:path'
import { AppError } from '@twinserve/shared'
import { valueInfo } from '../../onnx/graph-builder.ts'
import type { IModelProto } from '../../onnx/proto.ts'
import { onnx } from '../../onnx/proto.ts'
import { openSession, type ort } from '../../runtime/ort-session.ts'
import { locationOf, setLocation } from '../import/tensor-data.ts'
import { GraphEditor } from './graph-editor.ts'

/**
 * The model's bytes with `names` exposed as outputs (intermediates keep their values), each through an Identity
 * under a fresh name (onnxruntime 1.30 crashes returning some intermediates directly, e.g. a Range's output), and
 * declared float unless `elems` gives its ONNX element type (onnxruntime checks every output's type).
 * @returns the model and, per name, the output that carries it
 */
export function exposeTensors(
  model: IModelProto,
  names: readonly string[],
  elems?: ReadonlyMap<string, number>,
): { model: IModelProto; outputs: Map<string, string> } {
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
  return { model: copy, outputs }
}

/**
 * A copy of a skeleton (import/tensor-data.ts) that onnxruntime can open from a file in `dir`: external locations
 * made relative to `dir`, which must hold them (the staging directory holds every file the build wrote).
 */
export function relativeTo(model: IModelProto, dir: string): IModelProto {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
  for (const t of copy.graph?.initializer ?? []) {
    const loc = locationOf(t)
    if (!loc) continue
    const rel = relative(dir, loc.file)
    if (rel.startsWith('..') || isAbsolute(rel))
      throw new AppError('INTERNAL', `tensor '${t.name}' lives outside ${dir} (${loc.file})`)
    setLocation(t, { ...loc, file: rel })
  }
  return copy
}

/** Opens a session on `model`: from its bytes, or, when it has external tensors, from a file written in `dir`. */
export async function openModel(
  model: IModelProto,
  dir: string | undefined,
): Promise<{ session: ort.InferenceSession; cleanup: () => Promise<void> }> {
  const external = (model.graph?.initializer ?? []).some((t) => locationOf(t) !== undefined)
  if (!external) {
    const { session } = await openSession(onnx.ModelProto.encode(model).finish(), {
      provider: 'cpu',
    })
    return { session, cleanup: async () => {} }
  }
  if (!dir)
    throw new AppError('INTERNAL', 'a model with external tensors needs a directory to open from')
  const path = join(dir, `.session-${randomBytes(6).toString('hex')}.onnx`)
  await writeFile(path, onnx.ModelProto.encode(relativeTo(model, dir)).finish())
  try {
    const { session } = await openSession(path, { provider: 'cpu' })
    return { session, cleanup: () => rm(path, { force: true }) }
  } catch (err) {
    await rm(path, { force: true })
    throw err
  }
}

/** A session on the model with `names` exposed, run on feeds; returns the named tensors. */
export class TensorProbe {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly outputs: ReadonlyMap<string, string>,
    private readonly cleanup: () => Promise<void>,
  ) {}

  /** @param dir where to write the model when its tensors are external (the staging directory) */
  static async open(
    model: IModelProto,
    names: readonly string[],
    elems?: ReadonlyMap<string, number>,
    dir?: string,
  ): Promise<TensorProbe> {
    const exposed = exposeTensors(model, names, elems)
    const opened = await openModel(exposed.model, dir)
    return new TensorProbe(opened.session, exposed.outputs, opened.cleanup)
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
    await this.cleanup()
  }
}
