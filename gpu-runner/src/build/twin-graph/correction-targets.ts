/**
 * Which node's output receives each exclusive tensor's correction: the node that uses the tensor, or the bias
 * `Add` right after a MatMul (see correctionTarget), or, when that output is the same for every row, the `Add`
 * that first brings it together with the batch (see pastSharedOutputs).
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto, INodeProto } from '../../onnx/proto.ts'
import type { TensorLayout } from '../graph/row-layout.ts'
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

/**
 * A correction is per row, so it must land on a tensor that has the batch. A node whose output has none (a
 * position embedding looked up from `arange(seq)`, then broadcast-added to the token embeddings) passes its
 * correction on through `Add`s, which are linear in each operand, to the first output that has the batch.
 */
function pastSharedOutputs(
  nodes: readonly INodeProto[],
  consumers: ReadonlyMap<string, readonly { node: number; slot: number }[]>,
  graphOutputs: ReadonlySet<string>,
  layouts: { get(tensor: string): TensorLayout | undefined },
  weight: string,
  start: number,
): number {
  let at = start
  for (;;) {
    const y = nodes[at]?.output?.[0] ?? ''
    if (layouts.get(y)?.kind !== 'shared') return at
    const next = consumers.get(y) ?? []
    const add = next.length === 1 ? nodes[next[0]?.node ?? -1] : undefined
    if (graphOutputs.has(y) || add?.opType !== 'Add' || (add.input ?? []).length !== 2)
      throw new AppError(
        'INVALID_MODEL',
        `tensor '${weight}': the output '${y}' of ${nodes[at]?.opType} node '${nodes[at]?.name ?? ''}' is the same for every row (it has no batch axis) and does not flow into an Add with the batch, so a per-row correction has nowhere to go; exclude '${weight}' from exclusive knowledge`,
      )
    at = next[0]?.node ?? at
  }
}

/** For each tensor, per use (in the site's order): the index of the node whose output gets the correction. */
export function correctionTargets(
  model: IModelProto,
  sites: ReadonlyMap<string, TensorSite>,
  tensors: readonly { name: string }[],
  layouts: { get(tensor: string): TensorLayout | undefined },
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
      site.uses.map((u) =>
        pastSharedOutputs(
          nodes,
          consumers,
          outputs,
          layouts,
          name,
          correctionTarget(nodes, consumers, constants, outputs, u),
        ),
      ),
    )
  }
  return out
}
