/**
 * Runs the router only for batches that use it. The router's nodes (the copied shared-model ancestors of its
 * feature, the pooling and the router itself) move into the `then` branch of an `If` on "some row has
 * use_router = 1"; the `else` branch passes a [batch, T] tensor through, which the per-row `Where` discards.
 *
 * Why: with the default feature (the shared model's last hidden features) routing is one more pass of the shared
 * model. onnxruntime computes every node an output depends on, and `Where` depends on both of its branches, so
 * without the `If` explicit mixes, `shared` rows and the materialised path all paid for a router they ignore
 * (about 1.8× the shared model's latency on a BERT-base-shaped encoder instead of the 1.25× the factors cost).
 * @module
 */
import { type Dim, valueInfo } from '../../onnx/graph-builder.ts'
import { onnx } from '../../onnx/proto.ts'
import type { GraphEditor } from '../graph/graph-editor.ts'
import type { Ops } from '../graph/ops.ts'

/**
 * Moves the nodes appended since `from` (which compute `probs`) into an `If` on any(`useRouter` > 0.5).
 * @param passThrough a [batch, T] float tensor the `else` branch returns (its values are never applied)
 * @returns the tensor to use in place of `probs`
 */
export function gateRouter(
  editor: GraphEditor,
  ops: Ops,
  opts: {
    from: number
    probs: string
    dims: readonly Dim[]
    useRouter: string
    passThrough: string
  },
): string {
  const graph = editor.graph
  const nodes = graph.node ?? []
  const body = nodes.slice(opts.from)
  graph.node = nodes.slice(0, opts.from)
  // ReduceMax without axes reduces every axis in all opsets (attribute before 18, optional input from 18).
  const anyRow = editor.node('ReduceMax', [opts.useRouter], {
    attrs: { keepdims: 0 },
    hint: 'router/any_row',
  })
  const needed = editor.node('Greater', [anyRow, ops.scalar(0.5, 'router/half')], {
    hint: 'router/needed',
  })
  const skipped = editor.fresh('router/skipped')
  const gated = editor.fresh('router/gated')
  const GRAPH = onnx.AttributeProto.AttributeType.GRAPH
  editor.addNode({
    name: editor.fresh('router/gate_node'),
    opType: 'If',
    domain: '',
    input: [needed],
    output: [gated],
    attribute: [
      {
        name: 'then_branch',
        type: GRAPH,
        g: { name: 'router', node: body, output: [valueInfo(opts.probs, 'float', opts.dims)] },
      },
      {
        name: 'else_branch',
        type: GRAPH,
        g: {
          name: 'no_router',
          node: [
            {
              name: editor.fresh('router/skipped_node'),
              opType: 'Identity',
              domain: '',
              input: [opts.passThrough],
              output: [skipped],
            },
          ],
          output: [valueInfo(skipped, 'float', opts.dims)],
        },
      },
    ],
  })
  return gated
}
