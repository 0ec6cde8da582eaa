/**
 * Where each float initializer is used, and whether the twin rewrite can give it per-example exclusive knowledge.
 *
 * A 2-D initializer W is a *matrix* tensor when every use is the weight operand of a linear map:
 * - `MatMul(X, W)` (input 1);
 * - `Gemm(A, W, C)` (input 1), with `transB` deciding whether the stored layout is [d_in, d_out] or [d_out, d_in];
 * - either of the above behind a `Transpose` node (PyTorch exporters emit `Transpose(W)` → MatMul for
 *   `nn.Linear` with fixed batch shapes, and tied embeddings reuse one W in both layouts);
 * - `Gather(W, ids)` on axis 0: an embedding table, whose lookup is the product of a one-hot row with W (so a
 *   tied embedding and LM head, one W in a Gather and a Gemm, is one matrix with two uses).
 * A 1-D initializer p is a *vector* tensor when every use is elementwise on the last axis: `Add`/`Sub`/`Mul` with
 * an activation, `LayerNormalization` scale or bias, or `Gemm`'s C. One initializer may be used by several nodes
 * (shared weights): each use becomes its own site, all fed from the same factors.
 * Anything else (Conv kernels, Gather tables, Constant-only tensors) is reported as unsupported with the reason.
 * @module
 */
import type { GraphProto, IAttributeProto, INodeProto, ITensorProto } from '../../onnx/proto.ts'
import { toNumber } from '../../onnx/proto.ts'
import { isFloatTensor, tensorDims } from '../import/read-onnx.ts'

export interface MatrixUse {
  /** Index of the MatMul/Gemm/Gather node in graph.node. */
  node: number
  op: 'MatMul' | 'Gemm' | 'Gather'
  /** True when the node multiplies by Wᵀ (W as stored): Gemm transB=1, or a Transpose in between, not both. */
  transposed: boolean
  /** Index of the Transpose node between the initializer and the node, if any. */
  via?: number
}

export interface VectorUse {
  node: number
  op: 'Add' | 'Sub' | 'Mul' | 'LayerNormalization' | 'Gemm'
  /** Which input of the node the parameter is. */
  slot: number
}

export type TensorSite =
  | { name: string; kind: 'matrix'; shape: [number, number]; uses: MatrixUse[] }
  | { name: string; kind: 'vector'; shape: [number]; uses: VectorUse[] }
  | { name: string; kind: 'unsupported'; shape: number[]; reason: string }

export function intAttr(node: INodeProto, name: string, fallback: number): number {
  const a = (node.attribute ?? []).find((x: IAttributeProto) => x.name === name)
  return a?.i != null ? toNumber(a.i) : fallback
}

export function floatAttr(node: INodeProto, name: string, fallback: number): number {
  const a = (node.attribute ?? []).find((x: IAttributeProto) => x.name === name)
  return a?.f != null ? (a.f as number) : fallback
}

function intsAttr(node: INodeProto, name: string): number[] | undefined {
  const a = (node.attribute ?? []).find((x: IAttributeProto) => x.name === name)
  return a?.ints ? a.ints.map((x) => toNumber(x)) : undefined
}

/** Consumers of every tensor name: node index and input slot. */
export function consumersOf(graph: {
  node?: INodeProto[] | null
}): Map<string, { node: number; slot: number }[]> {
  const map = new Map<string, { node: number; slot: number }[]>()
  ;(graph.node ?? []).forEach((n, node) => {
    ;(n.input ?? []).forEach((name, slot) => {
      if (!name) return
      const list = map.get(name) ?? []
      list.push({ node, slot })
      map.set(name, list)
    })
  })
  return map
}

/** Every float initializer, classified. */
export function analyseSites(
  graph: GraphProto,
  initializers: ReadonlyMap<string, ITensorProto>,
): Map<string, TensorSite> {
  const nodes = graph.node ?? []
  const consumers = consumersOf(graph)
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name ?? ''))
  const sites = new Map<string, TensorSite>()
  for (const [name, t] of initializers) {
    if (!isFloatTensor(t)) continue
    const shape = tensorDims(t)
    const uses = consumers.get(name) ?? []
    const unsupported = (reason: string): TensorSite => ({
      name,
      kind: 'unsupported',
      shape,
      reason,
    })
    const describe = (u: { node: number; slot: number }) =>
      `${nodes[u.node]?.opType} node '${nodes[u.node]?.name ?? ''}' (input ${u.slot})`
    if (uses.length === 0 || graphOutputs.has(name)) {
      sites.set(name, unsupported(uses.length === 0 ? 'not used by any node' : 'is a graph output'))
      continue
    }
    if (shape.length === 2) {
      const matrixUses: MatrixUse[] = []
      let reason: string | undefined
      const asWeight = (node: number, slot: number, flipped: boolean, via?: number): boolean => {
        const n = nodes[node] as INodeProto
        if (n.opType === 'MatMul' && slot === 1) {
          matrixUses.push({
            node,
            op: 'MatMul',
            transposed: flipped,
            ...(via === undefined ? {} : { via }),
          })
          return true
        }
        if (n.opType === 'Gemm' && slot === 1) {
          const transB = intAttr(n, 'transB', 0) === 1
          matrixUses.push({
            node,
            op: 'Gemm',
            transposed: transB !== flipped,
            ...(via === undefined ? {} : { via }),
          })
          return true
        }
        if (n.opType === 'Gather' && slot === 0 && !flipped && intAttr(n, 'axis', 0) === 0) {
          matrixUses.push({ node, op: 'Gather', transposed: false })
          return true
        }
        return false
      }
      for (const u of uses) {
        const n = nodes[u.node] as INodeProto
        if (asWeight(u.node, u.slot, false)) continue
        const perm = intsAttr(n, 'perm')
        if (n.opType === 'Transpose' && (perm === undefined || (perm[0] === 1 && perm[1] === 0))) {
          const out = n.output?.[0] ?? ''
          const next = consumers.get(out) ?? []
          if (graphOutputs.has(out) || next.length === 0) {
            reason = `its Transpose '${n.name}' feeds no MatMul/Gemm`
            break
          }
          const bad = next.find((v) => !asWeight(v.node, v.slot, true, u.node))
          if (bad) {
            reason = `its Transpose '${n.name}' is consumed by ${describe(bad)}`
            break
          }
          continue
        }
        reason = `it is consumed by ${describe(u)}; only MatMul/Gemm weights (input 1) and Gather tables (axis 0) can carry exclusive knowledge`
        break
      }
      sites.set(
        name,
        reason
          ? unsupported(reason)
          : {
              name,
              kind: 'matrix',
              shape: [shape[0] as number, shape[1] as number],
              uses: matrixUses,
            },
      )
      continue
    }
    if (shape.length === 1) {
      const vectorUses: VectorUse[] = []
      let reason: string | undefined
      for (const u of uses) {
        const n = nodes[u.node] as INodeProto
        const op = n.opType ?? ''
        if ((op === 'Add' || op === 'Sub' || op === 'Mul') && (n.input ?? []).length === 2) {
          if (n.input?.[0] === n.input?.[1]) {
            reason = `it is both operands of ${describe(u)}`
            break
          }
          vectorUses.push({ node: u.node, op, slot: u.slot })
        } else if (op === 'LayerNormalization' && (u.slot === 1 || u.slot === 2))
          vectorUses.push({ node: u.node, op, slot: u.slot })
        else if (op === 'Gemm' && u.slot === 2) vectorUses.push({ node: u.node, op, slot: u.slot })
        else {
          reason = `it is consumed by ${describe(u)}; only Add/Sub/Mul operands, LayerNormalization scale/bias and Gemm C can carry exclusive knowledge`
          break
        }
      }
      sites.set(
        name,
        reason
          ? unsupported(reason)
          : { name, kind: 'vector', shape: [shape[0] as number], uses: vectorUses },
      )
      continue
    }
    sites.set(
      name,
      unsupported(`it has rank ${shape.length}; only 2-D matrices and 1-D vectors are supported`),
    )
  }
  return sites
}
