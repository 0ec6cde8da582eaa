/**
 * Gives initializers with identical contents (type, dims and bytes) one name, so that onnxruntime's common
 * subexpression elimination sees the nodes that read them as the same node and runs it once.
 *
 * Why: the twin builder emits each corrected matrix's tables under that matrix's own names, and many are equal,
 * e.g. every site's `expert_of_rank` index table. In the LM zoo's twin graph 96 initializers repeat another, and
 * the per-site `Gather(weights, expert_of_rank)` ran 22 times per pass where once gives the same tensor: merging
 * them cut a batch-32 decode pass's CPU time by ~30 % with bit-identical outputs (bench/RESULTS.md "Findings
 * (bench:generate)"). Values are untouched, so results cannot change.
 * @module
 */
import { createHash } from 'node:crypto'
import { type IGraphProto, type INodeProto, onnx } from './proto.ts'

/** Renames node inputs (in subgraphs too: If/Loop bodies read outer initializers by name). */
function renameInputs(nodes: readonly INodeProto[], rename: ReadonlyMap<string, string>): void {
  for (const n of nodes) {
    n.input = (n.input ?? []).map((x) => rename.get(x) ?? x)
    for (const a of n.attribute ?? []) {
      if (a.g) renameInputs(a.g.node ?? [], rename)
      for (const g of a.graphs ?? []) renameInputs(g.node ?? [], rename)
    }
  }
}

/**
 * Drops each initializer that repeats an earlier one and points its readers at the earlier one. Initializers that
 * are also graph inputs (overridable) or outputs are left alone.
 * @returns how many were dropped
 */
export function dedupeInitializers(graph: IGraphProto): number {
  const io = new Set([...(graph.input ?? []), ...(graph.output ?? [])].map((v) => v.name ?? ''))
  const first = new Map<string, string>()
  const rename = new Map<string, string>()
  for (const t of graph.initializer ?? []) {
    const name = t.name ?? ''
    if (!name || io.has(name)) continue
    // Raw bytes when the exporter used them (the usual form); otherwise the tensor's encoding without its name.
    const bytes = t.rawData?.length
      ? t.rawData
      : onnx.TensorProto.encode({ ...t, name: '' }).finish()
    const key = `${t.dataType}|${(t.dims ?? []).join(',')}|${createHash('sha256').update(bytes).digest('hex')}`
    const earlier = first.get(key)
    if (earlier) rename.set(name, earlier)
    else first.set(key, name)
  }
  if (rename.size === 0) return 0
  renameInputs(graph.node ?? [], rename)
  graph.initializer = (graph.initializer ?? []).filter((t) => !rename.has(t.name ?? ''))
  return rename.size
}
