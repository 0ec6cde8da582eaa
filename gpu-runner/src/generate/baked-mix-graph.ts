/**
 * A mix baked into the decoder (issue 14, speed): the merged decode graph (merged-decode-graph.ts) with one mix's
 * merged matrices and the mix itself turned from graph inputs into initializers, for a session of its own.
 *
 * Why: fed as inputs, the merged matrices cannot be prepacked by onnxruntime, and the vector deltas (biases,
 * LayerNorm scales) are still computed from the rows' `mix_weights` on every pass. As initializers, onnxruntime
 * prepacks the matrices and constant-folds the vector deltas when the session opens, so a pass costs what the
 * plain shared model's does. On zoo/lm, one decode pass on one thread (`npm run bench:decode-graph`, AMD EPYC,
 * 2026-12-06): merged with the matrices fed 1.5–1.75× the plain model's, baked 1.1–1.2× (in the engine:
 * `npm run bench:merged-decode`). Opening such a session takes ~0.1 s in a thread of its
 * own and holds one more copy of the model (`npm run bench:load-memory`), so the engine bakes only a mix that many
 * passes apply (a tenant's pinned mix: merged-mixes.ts).
 *
 * The mix becomes a [1, T] initializer where the rows fed [B, T]: every reader of `mix_weights` in a merged decode
 * graph broadcasts it over rows (the joined vector deltas' Gemm, a factored site's per-rank Gather), which the
 * engine checks on the first pass of each baked session against the merged one before it trusts it.
 * @module
 */
import { floatTensor } from '../onnx/graph-builder.ts'
import { onnx } from '../onnx/proto.ts'
import { nodeReads, pruneDeadNodes } from './likelihood-graph.ts'
import { MERGE_MIX } from './merged-decode-graph.ts'

/**
 * The merged decode graph `mergedDecode` with `matrices` (each merged matrix's input name → its values, [d_in,
 * d_out] as the input's shape) and the mix `mix` [T] baked in as initializers; inputs nothing reads any more (the
 * pruned router's controls) are dropped.
 * @throws Error when a matrix or the mix is not an input of the graph, or a matrix has the wrong size
 */
export function bakedMixGraph(
  mergedDecode: Uint8Array,
  matrices: Readonly<Record<string, Float32Array>>,
  mix: Float32Array,
): Uint8Array {
  const model = onnx.ModelProto.decode(mergedDecode)
  const graph = model.graph
  if (!graph) throw new Error('the merged decode graph has no graph')
  const inputs = new Map((graph.input ?? []).map((i) => [i.name ?? '', i]))
  const baked = new Set<string>()
  const initializers = [...(graph.initializer ?? [])]
  for (const [name, values] of Object.entries(matrices)) {
    const dims = (inputs.get(name)?.type?.tensorType?.shape?.dim ?? []).map((d) =>
      Number(d.dimValue ?? -1),
    )
    if (dims.length !== 2 || dims.some((d) => d < 1))
      throw new Error(`${name} is not a matrix input of the merged decode graph`)
    if (values.length !== (dims[0] as number) * (dims[1] as number))
      throw new Error(`${name} has ${values.length} values, not [${dims.join(', ')}]`)
    initializers.push(floatTensor(name, values, dims))
    baked.add(name)
  }
  if (!inputs.has(MERGE_MIX)) throw new Error(`the merged decode graph has no ${MERGE_MIX} input`)
  initializers.push(floatTensor(MERGE_MIX, mix, [1, mix.length]))
  baked.add(MERGE_MIX)
  graph.initializer = initializers
  pruneDeadNodes(graph)
  const read = new Set((graph.node ?? []).flatMap(nodeReads))
  graph.input = (graph.input ?? []).filter(
    (i) => !baked.has(i.name ?? '') && read.has(i.name ?? ''),
  )
  return onnx.ModelProto.encode(model).finish()
}
