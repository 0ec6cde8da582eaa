/**
 * Perplexity of a decoder on the LM zoo's held-out splits (issue 14, "Quality"), through onnxruntime and the
 * runner's own DecoderGraph: plain graphs (experts, base, static merges) and the twin graph under a routing mode.
 *
 * A document is `BOS + text + EOS` cut to the context (256 ids), scored alone from position 0, as the zoo's
 * README and fixtures/perplexity.json define it: perplexity = exp(Σ −log p(idₜ | ids₍<t₎) over t ≥ 1 / number of
 * such t), pooled over a domain's documents. Documents of similar length share a pass, right-padded (mask 0): a
 * causal decoder's real positions never see the padding after them, so each row scores as it would alone.
 *
 * The same pass also gives the _conditional_ perplexity: the document's first n ids (BOS included, default 32)
 * are the prompt, what the router and every model are conditioned on, and only the continuation is scored,
 * exp(Σ over t ≥ n of −log p(idₜ | ids₍<t₎) / number of such t). A document of ≤ n ids has no continuation.
 *
 * A twin row's mix is fixed per document, as the runner fixes it per sequence: `router` runs the document's
 * prompt (its beginning, what a request would send) alone through the twin graph with the router on, exactly as
 * the engine's prefill does, and holds the weights it applied (`expert_weights`) as the document's explicit mix;
 * with `likelihood` the mix is the one the engine computes from the prompt's likelihood under each expert
 * (prompt-likelihood.ts), as a package with `router.promptLikelihood` serves it; `oracle` is the true domain
 * one-hot; `zero` is the shared model.
 * @module
 */
import {
  DecoderGraph,
  type LmProfile,
  likelihoodWeights,
  type PromptEvidence,
  type PromptLikelihoodOptions,
  promptEvidenceBatch,
  readPromptBag,
  sureExpert,
  tokenNll,
} from '@twinserve/gpu-runner/generate'
import { controlsOf, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { type LmZooDomain, readLmZooSplit } from '@twinserve/zoo/lm'
import type { Accuracy, RoutingMode, Session } from './evaluate.ts'

/** Documents per pass: [16, ≤256, 2048] float32 logits is 32 MB. */
const BATCH = 16

/** The conditional protocol's prompt: the document's first 32 ids (BOS included). */
export const DEFAULT_PROMPT_IDS = 32

export interface LmDoc {
  /** BOS + text + EOS, cut to the context. */
  ids: number[]
  /** The ids a request with this document's prompt sends (BOS + prompt): what the router sees. */
  promptIds: number[]
}

export interface LmTaskData {
  name: string
  docs: LmDoc[]
  /** Predicted ids over the split (Σ (length − 1)). */
  tokens: number
}

/** Where a routed twin row takes its mix from: the document's prompt, or its first `n` ids. */
export type RouteFrom = { kind: 'prompt' } | { kind: 'prefix'; tokens: number }

export interface LmRouting {
  mode: RoutingMode
  from?: RouteFrom
  /**
   * Route a `router` row as the runner does for a package with `router.promptLikelihood`: by each expert's
   * likelihood of the prompt (promptEvidence + likelihoodWeights, the engine's own functions), not the graph's
   * router; a one-token prompt still goes to the router, as in the engine.
   */
  likelihood?: PromptLikelihoodOptions
}

export function loadLmSplits(
  profile: LmProfile,
  domains: readonly string[],
  split: 'validation' | 'test',
): LmTaskData[] {
  const eos = profile.file.tokenizer.eosTokenId
  return domains.map((name) => {
    const docs = readLmZooSplit(name as LmZooDomain, split).map((d) => ({
      ids: [...profile.encodePrompt(d.text), eos].slice(0, profile.maxContext),
      promptIds: profile.encodePrompt(d.prompt),
    }))
    return { name, docs, tokens: docs.reduce((n, d) => n + d.ids.length - 1, 0) }
  })
}

function emptyCache(graph: DecoderGraph): Float32Array[] {
  return Array.from({ length: 2 * graph.layout.layers }, () => new Float32Array(0))
}

/** Each document's summed NLL under both protocols, from one pass. */
export interface DocumentSums {
  /** Σ over t ≥ 1 of −log p(idₜ | ids₍<t₎): the whole document. */
  whole: number[]
  /** Σ over t ≥ n of −log p(idₜ | ids₍<t₎): the continuation after the first n ids (0 for a document of ≤ n ids). */
  continuation: number[]
}

/** How many ids the conditional protocol scores in `docs`: Σ max(0, length − n). */
export function continuationTokens(docs: readonly LmDoc[], promptIds: number): number {
  return docs.reduce((n, d) => n + Math.max(0, d.ids.length - promptIds), 0)
}

/**
 * Summed NLL of each document, whole and after its first `promptIds` ids (one pass per group of up to BATCH
 * documents of similar length: the continuation's sum is the tail of the whole one, not a second pass).
 */
export async function documentSums(
  graph: DecoderGraph,
  docs: readonly LmDoc[],
  controls: readonly RowControls[],
  promptIds: number = DEFAULT_PROMPT_IDS,
): Promise<DocumentSums> {
  if (!Number.isInteger(promptIds) || promptIds < 1)
    throw new Error(`promptIds must be a positive integer, not ${promptIds}`)
  const idsOf = (i: number): readonly number[] => docs[i]?.ids ?? []
  const order = docs.map((_, i) => i).sort((a, b) => idsOf(a).length - idsOf(b).length)
  const whole = new Array<number>(docs.length).fill(0)
  const continuation = new Array<number>(docs.length).fill(0)
  for (let start = 0; start < order.length; start += BATCH) {
    const rows = order.slice(start, start + BATCH)
    const B = rows.length
    const S = Math.max(...rows.map((i) => idsOf(i).length))
    const ids = new BigInt64Array(B * S) // [B, S], right-padded with id 0
    const mask = new BigInt64Array(B * S) // [B, S]
    const positions = new BigInt64Array(B * S) // [B, S]
    rows.forEach((d, b) => {
      const doc = idsOf(d)
      for (let s = 0; s < S; s++) {
        ids[b * S + s] = BigInt(doc[s] ?? 0)
        mask[b * S + s] = s < doc.length ? 1n : 0n
        positions[b * S + s] = BigInt(Math.min(s, doc.length - 1))
      }
    })
    const out = await graph.run({
      batch: B,
      seq: S,
      past: 0,
      ids,
      mask,
      positions,
      cache: emptyCache(graph),
      controls: rows.map((d) => controls[d] ?? {}),
    })
    const V = out.vocab
    rows.forEach((d, b) => {
      const doc = idsOf(d)
      let prompt = 0
      let rest = 0
      // Position s predicts id s + 1: the continuation's predictions are those of ids at s + 1 ≥ promptIds.
      for (let s = 0; s + 1 < doc.length; s++) {
        const at = (b * S + s) * V
        const x = tokenNll(out.logits.subarray(at, at + V), doc[s + 1] as number)
        if (s + 1 >= promptIds) rest += x
        else prompt += x
      }
      whole[d] = prompt + rest
      continuation[d] = rest
    })
  }
  return { whole, continuation }
}

/** Summed NLL of each whole document (t ≥ 1): `documentSums(…).whole`. */
export async function documentNlls(
  graph: DecoderGraph,
  docs: readonly LmDoc[],
  controls: readonly RowControls[],
): Promise<number[]> {
  return (await documentSums(graph, docs, controls)).whole
}

/** The weights the twin graph's router applies to `ids` alone (the engine's prefill of that prompt). */
export async function routedWeights(graph: DecoderGraph, ids: readonly number[], topK: number) {
  const n = ids.length
  const out = await graph.run({
    batch: 1,
    seq: n,
    past: 0,
    ids: BigInt64Array.from(ids, BigInt),
    mask: new BigInt64Array(n).fill(1n),
    positions: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
    cache: emptyCache(graph),
    controls: [{ useRouter: 1, topK }],
  })
  if (!out.weights) throw new Error('the twin graph returned no expert_weights')
  return out.weights.slice(0, graph.experts)
}

function argmax(v: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[best] as number)) best = i
  return best
}

/** Perplexity per domain under both protocols (lower is better). */
export interface LmPerplexity extends Accuracy {
  /** The whole document's perplexity (t ≥ 1), per domain: `perTask`. */
  perTask: number[]
  /** The continuation's perplexity after the first `promptIds` ids (t ≥ n), per domain: the conditional protocol. */
  conditional: number[]
  /** Routed rows: `routing` over the documents the conditional protocol scores (longer than `promptIds` ids). */
  conditionalRouting?: number[]
  /** Per domain, each document's summed NLL under both protocols: what a paired bootstrap over documents resamples. */
  docSums: DocumentSums[]
}

/** Prompts scored together by promptEvidenceBatch: T rows each, [16·T, ≤ n, 2048] float32 logits per pass. */
const EVIDENCE_BATCH = 16

/**
 * The mixes a routed row applies to each of `prompts`: with `like`, the bag classifier's expert when it is sure
 * (`like.bag`), else each expert's likelihood of the prompt
 * (promptEvidenceBatch + likelihoodWeights, prompts batched as the engine batches a step's prefills); else, and for
 * a one-token prompt, the weights the graph's router applies to it.
 */
export async function routedMixes(
  graph: DecoderGraph,
  prompts: readonly (readonly number[])[],
  topK: number,
  like: PromptLikelihoodOptions | undefined,
): Promise<ArrayLike<number>[]> {
  const out: ArrayLike<number>[] = new Array(prompts.length)
  // As the engine does: a prompt the package's bag-of-ids classifier is sure of goes to that expert alone, unscored.
  const bag = like?.bag ? readPromptBag(like.bag, graph.experts) : undefined
  const skipAbove = like?.bag?.skipAbove
  if (bag && skipAbove !== undefined)
    for (const [i, p] of prompts.entries()) {
      const sure = p.length >= 2 ? sureExpert(bag, p, skipAbove) : undefined
      if (sure === undefined) continue
      const mix = new Float32Array(graph.experts)
      mix[sure] = 1
      out[i] = mix
    }
  // A one-token prompt has no likelihood to compare: the engine sends it to the graph's router.
  const byLikelihood = like
    ? prompts.flatMap((p, i) => (p.length >= 2 && out[i] === undefined ? [i] : []))
    : []
  for (let k = 0; k < byLikelihood.length; k += EVIDENCE_BATCH) {
    const chunk = byLikelihood.slice(k, k + EVIDENCE_BATCH)
    const evidence = await promptEvidenceBatch(
      graph,
      chunk.map((i) => prompts[i] as readonly number[]),
      (like?.routerWeight ?? 0) !== 0,
    )
    chunk.forEach((i, j) => {
      out[i] = likelihoodWeights(evidence[j] as PromptEvidence, like as PromptLikelihoodOptions, {
        topK,
      })
    })
  }
  for (const [i, p] of prompts.entries())
    if (out[i] === undefined) out[i] = await routedWeights(graph, p, topK)
  return out
}

/**
 * Perplexity per domain of `session` on `data` (lower is better), whole-document (`perTask`) and conditional on
 * the first `promptIds` ids (`conditional`), from the same passes. With `twin` the session is a twin graph;
 * `routing` then holds, per domain, how often the routed mix's largest weight is the true domain.
 */
export async function evaluatePerplexity(
  session: Session,
  data: readonly LmTaskData[],
  twin?: { experts: number } & LmRouting,
  promptIds: number = DEFAULT_PROMPT_IDS,
): Promise<LmPerplexity> {
  const graph = new DecoderGraph(
    session,
    twin ? controlsOf(session.inputNames) : [],
    twin?.experts ?? 0,
  )
  const perTask: number[] = []
  const conditional: number[] = []
  const routing: number[] = []
  const conditionalRouting: number[] = []
  const docSums: DocumentSums[] = []
  for (const [t, { docs, tokens }] of data.entries()) {
    const mode = twin?.mode ?? { kind: 'zero' }
    let controls: RowControls[]
    let routed = 0
    let routedScored = 0
    if (mode.kind === 'oracle')
      controls = docs.map(() => ({
        mixWeights: Array.from({ length: graph.experts }, (_, e) => (e === t ? 1 : 0)),
      }))
    else if (mode.kind === 'router') {
      const from = twin?.from ?? { kind: 'prompt' }
      const prompts = docs.map((doc) =>
        from.kind === 'prompt' ? doc.promptIds : doc.ids.slice(0, from.tokens),
      )
      const mixes = await routedMixes(graph, prompts, mode.topK ?? graph.experts, twin?.likelihood)
      routed = mixes.filter((w) => argmax(w) === t).length
      routedScored = mixes.filter(
        (w, i) => argmax(w) === t && (docs[i]?.ids.length ?? 0) > promptIds,
      ).length
      controls = mixes.map((w) => ({ mixWeights: w }))
    } else controls = docs.map(() => ({}))
    const sums = await documentSums(graph, docs, controls, promptIds)
    docSums.push(sums)
    const total = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0)
    perTask.push(Math.exp(total(sums.whole) / tokens))
    const rest = continuationTokens(docs, promptIds)
    conditional.push(rest > 0 ? Math.exp(total(sums.continuation) / rest) : Number.NaN)
    routing.push(routed / docs.length)
    conditionalRouting.push(
      routedScored / Math.max(1, docs.filter((d) => d.ids.length > promptIds).length),
    )
  }
  return twin?.mode.kind === 'router'
    ? { perTask, conditional, routing, conditionalRouting, docSums }
    : { perTask, conditional, docSums }
}
