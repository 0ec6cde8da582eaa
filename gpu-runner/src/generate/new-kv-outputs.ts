/**
 * Exposes each layer's new keys and values as graph outputs of a Hugging Face layout decoder (issue 14, speed):
 * `present.N.key` is `Concat(past_key_values.N.key, K_new)` on the position axis, and this rewrite adds K_new
 * itself ([batch, heads, seq, head_dim]) as the output `new_key_values.N.key` (same for values). Nothing else in
 * the graph changes, so logits and `present` are bit-for-bit the same.
 *
 * Why: onnxruntime-node copies every fetched output into a freshly allocated ArrayBuffer. A decode pass at batch
 * 32 over an 80-position past returns six [32, 4, 81, 32] `present` tensors, 8 MB of new memory per step (page
 * faults, zero-filling, then the garbage collector), which cost ~40 % of the pass's CPU time (profile in
 * bench/RESULTS.md "Findings (bench:generate)"). Fetching only the new positions (6 × [32, 4, 1, 32]) lets the
 * engine grow the batched past itself, in buffers it reuses (engine.ts).
 * @module
 */
import { valueInfo } from '../onnx/graph-builder.ts'
import { type IGraphProto, onnx } from '../onnx/proto.ts'
import type { RunnableSession } from '../runtime/threaded-session.ts'

const PRESENT = /^present\.(\d+)\.(key|value)$/
const NEW_KV = /^new_key_values\.\d+\.(key|value)$/

/** The output holding layer `layer`'s new keys or values: [batch, heads, seq, head_dim]. */
export function newKvOutput(layer: number, kind: 'key' | 'value'): string {
  return `new_key_values.${layer}.${kind}`
}

/**
 * A session's names without the outputs exposeNewKv added: the runner adds them at load time (load-model.ts), so
 * they are no part of the package's contract (checkContract compares the outputs to the manifest's).
 */
export function withoutNewKv(
  session: Pick<RunnableSession, 'inputNames' | 'outputNames' | 'inputMetadata'>,
): Pick<RunnableSession, 'inputNames' | 'outputNames' | 'inputMetadata'> {
  return {
    inputNames: session.inputNames,
    inputMetadata: session.inputMetadata,
    outputNames: session.outputNames.filter((n) => !NEW_KV.test(n)),
  }
}

/**
 * Adds the new-keys/values outputs to a decoded graph (one Identity node per `present.N.*` that a Concat makes).
 * @returns how many outputs were added (0: not this layout, or already rewritten)
 */
export function addNewKvOutputs(graph: IGraphProto): number {
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''))
  const nodes = graph.node ?? []
  let added = 0
  for (const node of [...nodes]) {
    const m = PRESENT.exec(node.output?.[0] ?? '')
    const fresh = node.input?.[1]
    if (!m || node.opType !== 'Concat' || node.input?.length !== 2 || !fresh) continue
    const name = newKvOutput(Number(m[1]), m[2] as 'key' | 'value')
    if (outputs.has(name)) continue
    nodes.push({ opType: 'Identity', input: [fresh], output: [name], name: `expose/${name}` })
    // The new positions have `present`'s element type (float16 caches exist), not always float32.
    const info = valueInfo(name, 'float', ['batch', 'heads', 'seq', 'head_dim'])
    const presentType = graph.output?.find((o) => o.name === m[0])?.type?.tensorType?.elemType
    if (presentType && info.type?.tensorType) info.type.tensorType.elemType = presentType
    graph.output = [...(graph.output ?? []), info]
    added++
  }
  graph.node = nodes
  return added
}

/** The decoder's bytes with the new-keys/values outputs added, or `undefined` when none was (addNewKvOutputs). */
export function exposeNewKv(model: Uint8Array): Uint8Array | undefined {
  const decoded = onnx.ModelProto.decode(model)
  if (!decoded.graph || addNewKvOutputs(decoded.graph) === 0) return undefined
  return onnx.ModelProto.encode(decoded).finish()
}
