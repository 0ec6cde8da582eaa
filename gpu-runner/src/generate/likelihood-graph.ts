/**
 * The likelihood graph (issue 14, speed): the decoder as served, rewritten at load to score its own input. It takes
 * one more input, `target_ids` [batch, seq] (the id each position predicts: the next prompt token), and returns
 * `target_logprobs` [batch, seq], log p(target | ids up to that position) = LogSoftmax(logits)[target], in place of
 * the logits; every `present` (and new-keys) output is dropped, the twin graph's applied weights kept. Nodes that
 * fed only the dropped outputs are removed.
 *
 * Why: routing by the prompt's likelihood (prompt-likelihood.ts) runs T one-hot rows per prompt. With the plain
 * graph each pass fetched [rows, S, V] float logits (V = 2048: at concurrency 32, 160 rows of up to 46 positions
 * are 60 MB, which onnxruntime-node copies into fresh memory) and JavaScript then took a log-sum-exp in float64 per
 * position. Here onnxruntime computes the log-softmax (float32, threaded) and only [rows, S] numbers come back.
 *
 * The rewrite applies to a graph whose `logits` output is float and that imports the default opset 13 or later
 * (Unsqueeze and Squeeze take their axes as an input from 13 on); otherwise likelihoodGraph says why not and the
 * runner keeps scoring from the logits. The runner then groups it by expert where it can
 * (grouped-likelihood-graph.ts).
 * @module
 */
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { int64Tensor, toAttribute, valueInfo } from '../onnx/graph-builder.ts'
import { type IGraphProto, type INodeProto, onnx, TensorDataType, toNumber } from '../onnx/proto.ts'

/** The likelihood graph's extra input: the id each position predicts, int64 [batch, seq]. */
export const TARGET_IDS = 'target_ids'
/** Its output: log p(target_ids[b, s] | input up to s), float [batch, seq]. */
export const TARGET_LOGPROBS = 'target_logprobs'

/** Likelihood-graph bytes, or why the graph cannot be rewritten. */
export type LikelihoodGraph = { bytes: Uint8Array } | { unavailable: string }

/** The likelihood graph of a decoder's bytes (normally decoderAsServed's), or the reason there is none. */
export function likelihoodGraph(model: Uint8Array): LikelihoodGraph {
  const decoded = onnx.ModelProto.decode(model)
  const opset = decoded.opsetImport?.find((o) => !o.domain)?.version
  if (!decoded.graph) return { unavailable: 'the model has no graph' }
  const unavailable = addTargetLogprobs(decoded.graph, opset ? toNumber(opset) : 0)
  if (unavailable) return { unavailable }
  return { bytes: onnx.ModelProto.encode(decoded).finish() }
}

/**
 * Rewrites a decoded decoder graph in place into its likelihood graph (see the module comment).
 * @param opset the model's default-domain opset version
 * @returns undefined when done, else why the graph was left as it was
 */
export function addTargetLogprobs(graph: IGraphProto, opset: number): string | undefined {
  const outputs = graph.output ?? []
  const logits = outputs.find((o) => o.name === 'logits')
  if (!logits) return 'the graph has no `logits` output'
  if (logits.type?.tensorType?.elemType !== TensorDataType.FLOAT) return '`logits` is not float32'
  if (opset < 13) return `the graph imports opset ${opset}; the rewrite needs 13 or later`
  if ((graph.input ?? []).some((i) => i.name === TARGET_IDS))
    return `the graph already has an input named ${TARGET_IDS}`
  const names = new Set((graph.node ?? []).flatMap((n) => n.output ?? []))
  if (names.has(TARGET_LOGPROBS)) return `the graph already makes ${TARGET_LOGPROBS}`

  // The target's batch and sequence dims are input_ids' (symbolic in an exported decoder).
  const idsDims = graph.input?.find((i) => i.name === 'input_ids')?.type?.tensorType?.shape?.dim
  const dims = [0, 1].map((k) => {
    const d = idsDims?.[k]
    return d?.dimParam ? d.dimParam : d?.dimValue ? toNumber(d.dimValue) : k === 0 ? 'batch' : 'seq'
  })
  const p = (s: string) => `likelihood/${s}`
  const axes = p('last_axis')
  graph.initializer = [...(graph.initializer ?? []), int64Tensor(axes, [2], [1])]
  const added: INodeProto[] = [
    // [B, S, V]: log p(v | ids up to s), float32 in onnxruntime (max-subtracted, as tokenNll does in float64).
    {
      opType: 'LogSoftmax',
      input: ['logits'],
      output: [p('logprobs')],
      name: p('LogSoftmax'),
      attribute: [toAttribute('axis', -1)],
    },
    {
      opType: 'Unsqueeze',
      input: [TARGET_IDS, axes],
      output: [p('targets')],
      name: p('Unsqueeze'),
    }, // [B, S, 1]
    {
      opType: 'GatherElements',
      input: [p('logprobs'), p('targets')],
      output: [p('target_logprob')],
      name: p('GatherElements'),
      attribute: [toAttribute('axis', 2)],
    }, // [B, S, 1]
    {
      opType: 'Squeeze',
      input: [p('target_logprob'), axes],
      output: [TARGET_LOGPROBS],
      name: p('Squeeze'),
    }, // [B, S]
  ]
  graph.node = [...(graph.node ?? []), ...added]
  graph.input = [...(graph.input ?? []), valueInfo(TARGET_IDS, 'int64', dims)]
  // Nothing big comes out: the log-probabilities, and the twin graph's applied weights (the router row's).
  graph.output = [
    valueInfo(TARGET_LOGPROBS, 'float', dims),
    ...outputs.filter((o) => o.name === TWIN_OUTPUT_WEIGHTS),
  ]
  pruneDeadNodes(graph)
  return undefined
}

/** Every name a node reads, its subgraphs' reads included (they may read the outer graph's values). */
export function nodeReads(node: INodeProto): string[] {
  const out = [...(node.input ?? [])]
  for (const a of node.attribute ?? [])
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])])
      for (const n of g.node ?? []) out.push(...nodeReads(n))
  return out
}

/** Drops the nodes no output needs any more, then the initializers no node reads (grouped-likelihood-graph.ts too). */
export function pruneDeadNodes(graph: IGraphProto): void {
  const nodes = graph.node ?? []
  const needed = new Set((graph.output ?? []).map((o) => o.name ?? ''))
  const live = new Array<boolean>(nodes.length).fill(false)
  // Nodes are in topological order (ONNX requires it): one backward sweep finds every live node.
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i] as INodeProto
    if (!(node.output ?? []).some((o) => needed.has(o))) continue
    live[i] = true
    for (const r of nodeReads(node)) needed.add(r)
  }
  graph.node = nodes.filter((_, i) => live[i])
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ''))
  graph.initializer = (graph.initializer ?? []).filter(
    (t) => needed.has(t.name ?? '') || inputs.has(t.name ?? ''),
  )
}
