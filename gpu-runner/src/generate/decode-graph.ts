/**
 * The graph the runner decodes with (issue 14, speed): the decoder as served (decoder-as-served.ts) with fewer
 * nodes per corrected site, rewritten at load. At zoo/lm's size (d = 128, batch ≤ 32, one position a step) the
 * twin graph's cost is its node count more than its FLOPs (bench/RESULTS.md, "LM twin against the real shared
 * model: rank frontier"), so each correction's σ goes into its factor (fold-rank-scales.ts) and the vector deltas
 * into one product that also carries the shared biases and LayerNorm tables (joined-vector-deltas.ts).
 *
 * Only the decode session takes it: the likelihood graphs are derived from the graph as served, whose correction
 * pattern the grouped likelihood graph matches (grouped-likelihood-graph.ts). Outputs agree with the graph as served
 * to float32 rounding, not bit for bit (the sums run in another order; decode-graph.test.ts).
 * @module
 */
import { onnx } from '../onnx/proto.ts'
import { foldRankScales } from './fold-rank-scales.ts'
import { sortTopologically } from './graph-index.ts'
import { joinVectorDeltas } from './joined-vector-deltas.ts'
import { pruneDeadNodes } from './likelihood-graph.ts'

export type DecodeGraph =
  | {
      bytes: Uint8Array
      /** Corrections whose σ went into their factor. */
      foldedScales: number
      /** Vector deltas computed by the one product, and the shared biases and LayerNorms it carries. */
      joinedVectors: number
      foldedBases: number
    }
  | { unavailable: string }

/** The decode graph of a served decoder's bytes, or why the session should run the graph as served. */
export function decodeGraph(served: Uint8Array): DecodeGraph {
  try {
    const decoded = onnx.ModelProto.decode(served)
    const graph = decoded.graph
    if (!graph) return { unavailable: 'the model has no graph' }
    const foldedScales = foldRankScales(graph)
    const joined = joinVectorDeltas(graph)
    if (foldedScales === 0 && joined.joined === 0)
      return { unavailable: 'no correction matches the patterns folded' }
    // The rewrites append the nodes they add; pruning sweeps the nodes in order.
    sortTopologically(graph)
    pruneDeadNodes(graph)
    return {
      bytes: onnx.ModelProto.encode(decoded).finish(),
      foldedScales,
      joinedVectors: joined.joined,
      foldedBases: joined.folded,
    }
  } catch (err) {
    // A graph the patterns misread must not fail the load: the session runs the graph as served.
    return {
      unavailable: `the rewrite failed: ${err instanceof Error ? err.message : String(err)}`,
    }
  }
}
