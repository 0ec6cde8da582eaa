/**
 * Perplexity of a decoder on the LM zoo's held-out splits (issue 14, "Quality"), through onnxruntime and the
 * runner's own DecoderGraph: plain graphs (experts, base, static merges) and the twin graph under a routing mode.
 *
 * A document is `BOS + text + EOS` cut to the context (256 ids), scored alone from position 0, as the zoo's
 * README and fixtures/perplexity.json define it: perplexity = exp(Σ −log p(idₜ | ids₍<t₎) over t ≥ 1 / number of
 * such t), pooled over a domain's documents. Documents of similar length share a pass, right-padded (mask 0): a
 * causal decoder's real positions never see the padding after them, so each row scores as it would alone.
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
  type PromptLikelihoodOptions,
  promptEvidence,
  tokenNll,
} from '@twinserve/gpu-runner/generate'
import { controlsOf, type RowControls } from '@twinserve/gpu-runner/twin-contract'
import { type LmZooDomain, readLmZooSplit } from '@twinserve/zoo/lm'
import type { Accuracy, RoutingMode, Session } from './evaluate.ts'

/** Documents per pass: [16, ≤256, 2048] float32 logits is 32 MB. */
const BATCH = 16

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

/** Summed NLL of each document (one pass per group of up to BATCH documents of similar length). */
export async function documentNlls(
  graph: DecoderGraph,
  docs: readonly LmDoc[],
  controls: readonly RowControls[],
): Promise<number[]> {
  const idsOf = (i: number): readonly number[] => docs[i]?.ids ?? []
  const order = docs.map((_, i) => i).sort((a, b) => idsOf(a).length - idsOf(b).length)
  const nll = new Array<number>(docs.length).fill(0)
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
      let sum = 0
      for (let s = 0; s + 1 < doc.length; s++) {
        const at = (b * S + s) * V
        sum += tokenNll(out.logits.subarray(at, at + V), doc[s + 1] as number)
      }
      nll[d] = sum
    })
  }
  return nll
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

/**
 * Perplexity per domain of `session` on `data` (in `perTask`: lower is better). With `twin` the session is a
 * twin graph; `routing` then holds, per domain, how often the routed mix's largest weight is the true domain.
 */
export async function evaluatePerplexity(
  session: Session,
  data: readonly LmTaskData[],
  twin?: { experts: number } & LmRouting,
): Promise<Accuracy> {
  const graph = new DecoderGraph(
    session,
    twin ? controlsOf(session.inputNames) : [],
    twin?.experts ?? 0,
  )
  const perTask: number[] = []
  const routing: number[] = []
  for (const [t, { docs, tokens }] of data.entries()) {
    const controls: RowControls[] = []
    let routed = 0
    for (const doc of docs) {
      const mode = twin?.mode ?? { kind: 'zero' }
      if (mode.kind === 'oracle')
        controls.push({
          mixWeights: Array.from({ length: graph.experts }, (_, e) => (e === t ? 1 : 0)),
        })
      else if (mode.kind === 'router') {
        const from = twin?.from ?? { kind: 'prompt' }
        const ids = from.kind === 'prompt' ? doc.promptIds : doc.ids.slice(0, from.tokens)
        const like = twin?.likelihood
        const w =
          like && ids.length >= 2
            ? likelihoodWeights(
                await promptEvidence(graph, ids, (like.routerWeight ?? 0) !== 0),
                like,
                { topK: mode.topK ?? graph.experts },
              )
            : await routedWeights(graph, ids, mode.topK ?? graph.experts)
        if (argmax(w) === t) routed++
        controls.push({ mixWeights: w })
      } else controls.push({})
    }
    const nll = await documentNlls(graph, docs, controls)
    perTask.push(Math.exp(nll.reduce((a, b) => a + b, 0) / tokens))
    routing.push(routed / docs.length)
  }
  return twin?.mode.kind === 'router' ? { perTask, routing } : { perTask }
}
