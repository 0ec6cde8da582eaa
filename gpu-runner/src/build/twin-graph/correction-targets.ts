/**
 * Which node's output receives each exclusive tensor's correction: the node that uses the tensor, or the bias
 * `Add` right after a MatMul (see correctionTarget).
 * @module
 */
import type { IModelProto, INodeProto } from '../../onnx/proto.ts'
import { consumersOf, type TensorSite } from '../graph/weight-sites.ts'

/**
 * The node whose output receives a matrix use's correction. Usually the MatMul/Gemm itself; but when a MatMul's
 * only consumer is an `Add` of a constant (the bias of a Linear layer), after that Add: onnxruntime fuses
 * MatMul + bias Add into one Gemm that accumulates the bias inside its K loop, so inserting the correction
 * between them would change the shared computation's rounding. Past the Add, zero weights stay bit-exact.
 */
export function correctionTarget(
  nodes: readonly INodeProto[],
  consumers: ReadonlyMap<string, readonly { node: number; slot: number }[]>,
  constants: ReadonlySet<string>,
  graphOutputs: ReadonlySet<string>,
  use: { node: number; op: string },
): number {
  if (use.op !== 'MatMul') return use.node
  const y = nodes[use.node]?.output?.[0] ?? ''
  const next = consumers.get(y) ?? []
  const only = next[0]
  if (next.length !== 1 || !only || graphOutputs.has(y)) return use.node
  const add = nodes[only.node]
  if (add?.opType !== 'Add' || (add.input ?? []).length !== 2) return use.node
  const other = add.input?.[1 - only.slot] ?? ''
  return constants.has(other) ? only.node : use.node
}

/** For each tensor, per use (in the site's order): the index of the node whose output gets the correction. */
export function correctionTargets(
  model: IModelProto,
  sites: ReadonlyMap<string, TensorSite>,
  tensors: readonly { name: string }[],
): Map<string, number[]> {
  const graph = model.graph ?? {}
  const nodes = graph.node ?? []
  const consumers = consumersOf(graph)
  const constants = new Set((graph.initializer ?? []).map((t) => t.name ?? ''))
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''))
  const out = new Map<string, number[]>()
  for (const { name } of tensors) {
    const site = sites.get(name)
    if (!site || site.kind === 'unsupported') continue
    out.set(
      name,
      site.uses.map((u) => correctionTarget(nodes, consumers, constants, outputs, u)),
    )
  }
  return out
}

/** Tensors whose layout (batch alignment) the rewrite needs: the outputs of every node that gets a correction. */
export function correctedOutputs(
  model: IModelProto,
  sites: ReadonlyMap<string, TensorSite>,
  tensors: readonly { name: string }[],
): string[] {
  const nodes = model.graph?.node ?? []
  const targets = correctionTargets(model, sites, tensors)
  return [...new Set([...targets.values()].flat())].map((i) => nodes[i]?.output?.[0] ?? '')
}
