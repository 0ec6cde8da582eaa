/**
 * Batch tracking: where the batch axis is in every tensor of a graph, by shape inference from the graph inputs'
 * batch dimension. The inputs that carry the batch (axis 0 of every input declared with the batch's dim) start
 * as `[[B], …]`; each node's outputs follow from its inputs (node-infos.ts), through Transpose, Reshape and
 * attention layouts (`[seq, batch, d]`, `[batch·heads, seq, head_dim]`, `[seq·batch, d]`). Dims that depend on
 * tensor values (a Reshape's target, a Slice's bounds) come from one probe run of the model; everything else is
 * inferred, so the probe exposes only those few tensors.
 * @module
 */
import type { IGraphProto, INodeProto } from '../../onnx/proto.ts'
import { TensorDataType, toNumber } from '../../onnx/proto.ts'
import { tensorDims } from '../import/read-onnx.ts'
import { type NodeContext, nodeInfos, probedOutputs } from './node-infos.ts'
import { type Atom, lostInfo, plainInfo, type TensorInfo } from './tensor-atoms.ts'
import { intAttr } from './weight-sites.ts'

export interface GraphInputInfo {
  name: string
  /** Dims in the probe run. */
  dims: number[]
  /** Per axis, whether the model declares a number there (a size that never changes). */
  fixed: boolean[]
  /** Axis 0 is the batch. */
  batch: boolean
  elem: number
}

/** Integer values of constant tensors: int64/int32 initializers and Constant nodes. */
function integerConstants(graph: IGraphProto): Map<string, number[]> {
  const out = new Map<string, number[]>()
  const read = (t: NonNullable<INodeProto['attribute']>[number]['t']): number[] | undefined => {
    if (!t) return undefined
    if (t.dataType === TensorDataType.INT64) {
      if (t.rawData?.byteLength) {
        const copy = new Uint8Array(t.rawData)
        return Array.from(new BigInt64Array(copy.buffer, 0, copy.byteLength / 8), Number)
      }
      return (t.int64Data ?? []).map((x) => toNumber(x))
    }
    if (t.dataType === TensorDataType.INT32) {
      if (t.rawData?.byteLength) {
        const copy = new Uint8Array(t.rawData)
        return Array.from(new Int32Array(copy.buffer, 0, copy.byteLength / 4))
      }
      return [...(t.int32Data ?? [])]
    }
    return undefined
  }
  for (const t of graph.initializer ?? []) {
    const v = read(t)
    if (v) out.set(t.name ?? '', v)
  }
  for (const n of graph.node ?? []) {
    if (n.opType !== 'Constant' || !n.output?.[0]) continue
    const a = n.attribute?.[0]
    const v =
      read(a?.t) ??
      (a?.ints?.length
        ? a.ints.map((x) => toNumber(x))
        : a?.i != null
          ? [toNumber(a.i)]
          : undefined)
    if (v) out.set(n.output[0], v)
  }
  return out
}

function intsAttr(node: INodeProto, name: string): number[] | undefined {
  const a = (node.attribute ?? []).find((x) => x.name === name)
  return a?.ints?.length || a?.type === 7 ? (a.ints ?? []).map((x) => toNumber(x)) : undefined
}

/**
 * Every tensor's info, in graph order. `probed` holds the dims of the tensors `probeList` named; without it
 * (first pass) those dims are empty and only the element types are meaningful.
 */
export function trackBatch(
  graph: IGraphProto,
  opts: {
    inputs: readonly GraphInputInfo[]
    opset: number
    probed?: ReadonlyMap<string, readonly number[]>
  },
): Map<string, TensorInfo> {
  const infos = new Map<string, TensorInfo>()
  for (const t of graph.initializer ?? [])
    infos.set(t.name ?? '', plainInfo(tensorDims(t), t.dataType ?? TensorDataType.FLOAT, true))
  for (const i of opts.inputs) {
    const info = plainInfo(i.dims, i.elem, i.fixed)
    if (i.batch && i.dims.length > 0)
      info.axes[0] = [{ size: i.dims[0] as number, fixed: false, batch: true } satisfies Atom]
    infos.set(i.name, info)
  }
  const constants = integerConstants(graph)
  for (const node of graph.node ?? []) {
    const what = `${node.opType} node '${node.name ?? ''}'`
    const c: NodeContext = {
      node,
      opset: opts.opset,
      what,
      input: (i) => {
        const name = node.input?.[i]
        if (!name) return undefined
        return (
          infos.get(name) ?? lostInfo([], TensorDataType.FLOAT, `tensor '${name}' has no producer`)
        )
      },
      ints: (i) => constants.get(node.input?.[i] ?? ''),
      probed: (k) => [...(opts.probed?.get(node.output?.[k] ?? '') ?? [])],
      int: (name, fallback) => intAttr(node, name, fallback),
      intList: (name) => intsAttr(node, name),
    }
    const outs = nodeInfos(c)
    ;(node.output ?? []).forEach((o, k) => {
      if (o)
        infos.set(o, outs[k] ?? lostInfo(c.probed(k), TensorDataType.FLOAT, `${what} output ${k}`))
    })
  }
  return infos
}

/** The tensors whose dims the probe run must give, with their element types (to declare them as outputs). */
export function probeList(
  graph: IGraphProto,
  opts: { inputs: readonly GraphInputInfo[]; opset: number },
): { name: string; elem: number }[] {
  const first = trackBatch(graph, opts)
  const constants = integerConstants(graph)
  const out: { name: string; elem: number }[] = []
  for (const node of graph.node ?? [])
    for (const k of probedOutputs(node, opts.opset, (n) => constants.has(n))) {
      const name = node.output?.[k]
      if (name) out.push({ name, elem: first.get(name)?.elem ?? TensorDataType.FLOAT })
    }
  return out
}
