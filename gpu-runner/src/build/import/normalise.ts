/**
 * Import normalisation: what exporters emit, brought to the one form the rest of the builder reads. Run on the
 * base and on every expert right after reading, before the graphs are compared, so that all of them change alike.
 *
 * - Weights stored in `Constant` nodes (paddle2onnx, older exporters, `do_constant_folding=False` exports) become
 *   initializers under the Constant's output name: only initializers count as weights (merged, given exclusive
 *   knowledge), and expert graphs that differ only in a Constant's value are then the same graph. A Constant is a
 *   weight when it holds a float32 tensor of rank ≥ 1; scalars and integer constants (shape arithmetic) stay
 *   nodes. Constants inside subgraphs (If/Loop bodies) are left alone.
 * - IR version 3 requires every initializer to be a graph input too; lifting raises such a model to IR 4, which
 *   only dropped that requirement.
 * @module
 */
import type { ModelProto, NodeProto } from '../../onnx/proto.ts'
import { TensorDataType, toNumber } from '../../onnx/proto.ts'

export interface Normalised {
  /** Names of the Constant-node weights lifted to initializers, in graph order. */
  liftedConstants: string[]
}

/** The Constant node's tensor when it is a float32 weight of rank ≥ 1, else undefined. */
function weightOf(n: NodeProto) {
  if (n.opType !== 'Constant' || (n.domain ?? '') !== '' || (n.output ?? []).length !== 1)
    return undefined
  const attrs = n.attribute ?? []
  const value = attrs.length === 1 && attrs[0]?.name === 'value' ? attrs[0].t : undefined
  if (!value || value.dataType !== TensorDataType.FLOAT || (value.dims ?? []).length === 0)
    return undefined
  return value
}

/** Lifts the model's Constant-node weights to initializers, in place. */
export function normaliseModel(model: ModelProto): Normalised {
  const graph = model.graph
  const lifted: string[] = []
  if (!graph) return { liftedConstants: lifted }
  const kept: NodeProto[] = []
  const initializers = [...(graph.initializer ?? [])]
  for (const n of graph.node ?? []) {
    const t = weightOf(n as NodeProto)
    const name = n.output?.[0]
    if (!t || !name) {
      kept.push(n as NodeProto)
      continue
    }
    t.name = name
    initializers.push(t)
    lifted.push(name)
  }
  if (lifted.length === 0) return { liftedConstants: lifted }
  graph.node = kept
  graph.initializer = initializers
  if (toNumber(model.irVersion) < 4) model.irVersion = 4
  return { liftedConstants: lifted }
}
