/**
 * Routing a sequence by each expert's likelihood of its prompt (issue 14; recipe `router.prompt_likelihood`): the
 * experts as a generative classifier. One batched pass of T rows over the prompt, row e under the one-hot mix of
 * expert e, gives NLL_e = Σ −log p(idₛ₊₁ | ids₍≤ₛ₎); the mix is softmax(−NLL_e / τ), a posterior under a uniform
 * prior, flattened by τ. The NLL is the one bench/quality/lm-routing-probe.ts `--likelihood` scores (its
 * `documentNlls` of the prompt), where it beat the package's MLP router on test: 96.9 against 93.6 % normalised.
 *
 * Levers on that posterior, each off unless the package's options set it (recipe `router.prompt_likelihood`;
 * measured by bench/quality/lm-likelihood-probe.ts): the mean NLL per prompt token instead of the sum, a log prior
 * per expert, the graph router's weights to a power b multiplied in (its row rides in the same pass), and top-1
 * when the posterior is confident. The logits are −NLL_e / τ + logPrior_e + b · ln r_e (likelihoodPosterior).
 *
 * Where the pass's numbers come from: a graph with a likelihood graph beside it (`DecoderGraph.scorer`, derived at
 * load by likelihood-graph.ts) returns each position's log-probability of the next prompt token, [rows, S], computed
 * inside onnxruntime (LogSoftmax, GatherElements); without one (the rewrite did not apply, or `inGraph` false) the
 * pass fetches the logits, [rows, S, V], and tokenNll takes each position's log-sum-exp in float64 here. The sums
 * over positions are float64 either way; the two agree to ~1e-6 nats per token, ~3e-8 relative per prompt
 * (likelihood-graph.test.ts). For 32 held-out prompts (bench/generate-likelihood-pass.ts) the logits were 36 MB
 * and the JavaScript log-softmax about a quarter of the scoring's CPU time; the likelihood graph took 0.6× of it.
 * When the runner could group it (`DecoderGraph.scorerGrouped`, grouped-likelihood-graph.ts), the likelihood graph
 * takes the rows expert-major (scoringRow) and each one-hot row multiplies only its own expert's ranks: 0.66× the
 * ungrouped graph's CPU on those prompts, NLLs equal to float32 rounding (1.3e-7 relative). A pass with the
 * router's row (`routerWeight`) cannot be grouped; on a grouped graph it scores from the logits.
 *
 * A request's router controls apply to these weights as the twin graph applies them to its router's
 * (expert-weights.ts): abstain first (largest allowed weight, renormalised, under `abstain_below`: weights 0),
 * then `expert_mask`, `top_k` (ties at the k-th value kept), renormalised.
 * @module
 */
import { AppError, type PromptBagManifest } from '@twinserve/shared'
import type { RowControls } from '../twin-contract/encode-controls.ts'
import type { DecoderGraph, ScoreFeeds } from './decoder-graph.ts'

export interface PromptLikelihoodOptions {
  /** τ of softmax(−NLL / τ): above 1 the mix is softer. */
  temperature: number
  /**
   * Score each expert by its mean NLL per predicted prompt token rather than the sum, so that τ is in nats per
   * token and a long prompt is not more confident than a short one.
   */
  perToken?: boolean
  /** A log prior per expert ([T]), added to the logits −NLL_e / τ (fitted on the routing data at build time). */
  logPrior?: readonly number[]
  /**
   * Weight b on the graph router's opinion: logit_e += b · ln max(r_e, 1e-6), r the weights the graph's router
   * applies to the prompt (a product of experts: likelihood × router^b). Costs one more row in the pass.
   */
  routerWeight?: number
  /** A posterior whose largest allowed weight reaches this routes to that expert alone (top-1 when confident). */
  hardAbove?: number
  /**
   * A cascade: prefill with the graph's router first, and keep that mix and its KV when its largest applied weight
   * reaches this (no scoring pass, no second prefill); only the others are scored and prefilled again.
   */
  routerAbove?: number
  /**
   * A bag-of-ids prompt classifier (prompt-bag.ts, as the manifest stores it): a prompt it gives probability ≥
   * `skipAbove` for one expert routes to that expert alone, without the scoring pass (one prefill).
   */
  bag?: PromptBagManifest
}

/** What a prompt tells about its domain, per expert: the evidence the mix is computed from. */
export interface PromptEvidence {
  /** Each expert's summed NLL of the prompt's tokens after the first, [T]. */
  nll: ArrayLike<number>
  /** How many tokens were scored (prompt length − 1). */
  tokens: number
  /** The graph router's applied weights on the prompt, [T] (only when `routerWeight` asks for them). */
  router?: ArrayLike<number>
}

/** The router's weights below this count as this (its log would be −∞ for a weight that underflowed). */
const ROUTER_FLOOR = 1e-6

/** −log p(target) of one row of logits (log-sum-exp in float64). */
export function tokenNll(row: Float32Array, target: number): number {
  let max = Number.NEGATIVE_INFINITY
  for (let i = 0; i < row.length; i++) if ((row[i] as number) > max) max = row[i] as number
  let sum = 0
  for (let i = 0; i < row.length; i++) sum += Math.exp((row[i] as number) - max)
  return max + Math.log(sum) - (row[target] as number)
}

/**
 * Each expert's summed NLL of the prompt (its tokens after the first), [T]: one pass of T rows, row e the
 * one-hot mix of expert e, from position 0 with no past; with `withRouter`, row T runs the graph's router on the
 * same prompt (dense, top-k T) and its applied weights come back as `router`.
 */
export async function promptEvidence(
  graph: DecoderGraph,
  ids: readonly number[],
  withRouter = false,
): Promise<PromptEvidence> {
  return (await promptEvidenceBatch(graph, [ids], withRouter))[0] as PromptEvidence
}

/**
 * A pass pads every prompt to its longest: prompts of lengths far apart go to different passes, so that padding is
 * at most this share of a pass's positions over its real ones. At concurrency 32 one pass over the held-out
 * prompts (14 to 46 tokens) was half padding, and this pass costs more than all of a sequence's decode steps
 * (T rows per prompt, each with the whole vocabulary's logits).
 */
const MAX_PADDED_OVER_REAL = 1.25

/** Prompt indices in passes: longest first, a pass closed when one more prompt would pad it beyond the bound. */
export function lengthGroups(lengths: readonly number[]): number[][] {
  const order = lengths
    .map((_, i) => i)
    .sort((a, b) => (lengths[b] as number) - (lengths[a] as number))
  const groups: number[][] = []
  let group: number[] = []
  let longest = 0
  let real = 0
  for (const i of order) {
    const n = lengths[i] as number
    if (group.length > 0 && (group.length + 1) * longest > MAX_PADDED_OVER_REAL * (real + n)) {
      groups.push(group)
      group = []
      real = 0
    }
    if (group.length === 0) longest = n
    group.push(i)
    real += n
  }
  if (group.length > 0) groups.push(group)
  return groups
}

/**
 * promptEvidence of several prompts (the engine batches a step's likelihood-routed prefills), in as few passes as
 * lengthGroups allows: each prompt's T (or T + 1) rows, right-padded to its pass's longest prompt with mask 0. A
 * causal decoder's real positions never attend to the padding after them, so each row scores as it would alone.
 * `inGraph` (default true) scores in the graph's likelihood graph when it has one; false fetches the logits.
 */
export async function promptEvidenceBatch(
  graph: DecoderGraph,
  prompts: readonly (readonly number[])[],
  withRouter = false,
  inGraph = true,
): Promise<PromptEvidence[]> {
  const out: PromptEvidence[] = new Array(prompts.length)
  for (const group of lengthGroups(prompts.map((p) => p.length))) {
    const got = await onePass(
      graph,
      group.map((i) => prompts[i] as readonly number[]),
      withRouter,
      inGraph,
    )
    group.forEach((i, k) => {
      out[i] = got[k] as PromptEvidence
    })
  }
  return out
}

/**
 * Where a scoring pass puts prompt k's row e (e < T: expert e's one-hot row; e = T: the router's row) among P
 * prompts: prompt-major (prompt k's R rows together) for the likelihood graph and the logits, expert-major (expert
 * e's P rows together) for the grouped likelihood graph (grouped-likelihood-graph.ts), which has no router row.
 */
export function scoringRow(k: number, e: number, P: number, R: number, grouped: boolean): number {
  return grouped ? e * P + k : k * R + e
}

/**
 * The feeds of one scoring pass: R rows per prompt (T one-hot rows, then the router's row when `withRouter`),
 * right-padded to the longest prompt, with each position's next id as its target; rows in scoringRow's order
 * (`grouped`: expert-major, for a grouped likelihood graph; it cannot take a router row). Benches and tests build
 * their passes with this too, so what they time is what the engine runs.
 */
export function scoringFeeds(
  graph: DecoderGraph,
  prompts: readonly (readonly number[])[],
  withRouter = false,
  grouped = false,
): ScoreFeeds {
  if (grouped && withRouter)
    throw new AppError('INTERNAL', 'a grouped scoring pass has no router row (one-hot rows only)')
  const T = graph.experts
  const R = withRouter ? T + 1 : T // rows per prompt
  const P = prompts.length
  const B = R * P
  const S = Math.max(...prompts.map((p) => p.length))
  const ids = new BigInt64Array(B * S) // [B, S], padding id 0
  const targets = new BigInt64Array(B * S) // [B, S]: the next id, 0 where nothing is scored
  const mask = new BigInt64Array(B * S) // [B, S]
  const positions = new BigInt64Array(B * S) // [B, S]
  const controls: RowControls[] = new Array(B)
  for (const [k, prompt] of prompts.entries())
    for (let r = 0; r < R; r++) {
      const row = scoringRow(k, r, P, R, grouped)
      const at = row * S
      for (let s = 0; s < S; s++) {
        ids[at + s] = BigInt(prompt[s] ?? 0)
        targets[at + s] = BigInt(prompt[s + 1] ?? 0)
        mask[at + s] = s < prompt.length ? 1n : 0n
        positions[at + s] = BigInt(Math.min(s, prompt.length - 1))
      }
      if (r < T) {
        const mix = new Float32Array(T)
        mix[r] = 1
        controls[row] = { mixWeights: mix }
      } else controls[row] = { useRouter: 1, topK: T }
    }
  const cache = Array.from({ length: 2 * graph.layout.layers }, () => new Float32Array(0))
  return { batch: B, seq: S, past: 0, ids, mask, positions, cache, controls, targets }
}

/** promptEvidence of several prompts in one pass, right-padded to the longest. */
async function onePass(
  graph: DecoderGraph,
  prompts: readonly (readonly number[])[],
  withRouter: boolean,
  inGraph: boolean,
): Promise<PromptEvidence[]> {
  const T = graph.experts
  const R = withRouter ? T + 1 : T // rows per prompt
  const P = prompts.length
  // A grouped likelihood graph takes one-hot rows only, expert-major; a pass with the router's row uses the logits.
  const grouped = inGraph && graph.scorerGrouped && !withRouter
  const viaScorer = inGraph && graph.scorer !== undefined && (grouped || !graph.scorerGrouped)
  const { targets, ...feeds } = scoringFeeds(graph, prompts, withRouter, grouped)
  const S = feeds.seq
  // −log p(prompt[s + 1] | prompt up to s) of row `row` at position s.
  let nllAt: (row: number, s: number, target: number) => number
  let weights: Float32Array | undefined
  if (viaScorer) {
    // The likelihood graph: onnxruntime takes the log-softmax and picks the targets, [B, S] come back.
    const out = await graph.score({ ...feeds, targets })
    nllAt = (row, s) => -(out.logprobs[row * S + s] as number)
    weights = out.weights
  } else {
    // Scoring needs the logits only: no keys and values come back (T rows × the prompt, per prompt).
    const out = await graph.run({ ...feeds, keys: false })
    const V = out.vocab
    nllAt = (row, s, target) => {
      const at = (row * S + s) * V
      return tokenNll(out.logits.subarray(at, at + V), target)
    }
    weights = out.weights
  }
  return prompts.map((prompt, k) => {
    const nll = new Float64Array(T)
    // Summed in float64 either way.
    for (let e = 0; e < T; e++)
      for (let s = 0; s + 1 < prompt.length; s++)
        nll[e] =
          (nll[e] as number) + nllAt(scoringRow(k, e, P, R, grouped), s, prompt[s + 1] as number)
    const routerRow = scoringRow(k, T, P, R, grouped) * T
    return {
      nll,
      tokens: Math.max(prompt.length - 1, 0),
      ...(withRouter && weights ? { router: weights.slice(routerRow, routerRow + T) } : {}),
    }
  })
}

/** Each expert's summed NLL of the prompt, [T] (promptEvidence without the router row). */
export async function promptNlls(
  graph: DecoderGraph,
  ids: readonly number[],
): Promise<Float64Array> {
  return (await promptEvidence(graph, ids)).nll as Float64Array
}

/**
 * The routing posterior before a request's controls, [T]: softmax over experts of
 * −NLL_e / τ (NLL_e / tokens with `perToken`) + logPrior_e + routerWeight · ln max(r_e, 1e-6).
 */
export function likelihoodPosterior(
  evidence: PromptEvidence,
  options: PromptLikelihoodOptions,
): Float64Array {
  const { nll, tokens, router } = evidence
  const T = nll.length
  const per = options.perToken ? Math.max(tokens, 1) : 1
  const b = options.routerWeight ?? 0
  if (b !== 0 && router?.length !== T)
    throw new Error(
      'routerWeight needs the router weights on the prompt (promptEvidence withRouter)',
    )
  const logits = Float64Array.from(
    { length: T },
    (_, e) =>
      -(nll[e] as number) / per / options.temperature +
      (options.logPrior?.[e] ?? 0) +
      (b !== 0 ? b * Math.log(Math.max(router?.[e] as number, ROUTER_FLOOR)) : 0),
  )
  const max = Math.max(...logits)
  const p = logits.map((x) => Math.exp(x - max))
  const total = p.reduce((a, x) => a + x, 0)
  return p.map((x) => x / total)
}

/**
 * The mix a sequence applies: the posterior (likelihoodPosterior) with a request's router controls applied (see
 * the module comment), [T]. `evidence` may be a bare NLL vector and `options` a bare τ (sums, no other lever).
 */
export function likelihoodWeights(
  evidence: PromptEvidence | ArrayLike<number>,
  options: PromptLikelihoodOptions | number,
  controls: RowControls = {},
): Float32Array {
  const ev: PromptEvidence = 'nll' in evidence ? evidence : { nll: evidence, tokens: 1 }
  const opts = typeof options === 'number' ? { temperature: options } : options
  const p = likelihoodPosterior(ev, opts)
  const T = p.length
  const mask = Array.from({ length: T }, (_, e) => Number(controls.expertMask?.[e] ?? 1))
  const allowed = Array.from(p, (x, e) => x * (mask[e] as number))
  const allowedSum = Math.max(
    allowed.reduce((a, b) => a + b, 0),
    1e-12,
  )
  const top = Math.max(...allowed) / allowedSum
  const abstainBelow = controls.abstainBelow ?? 0
  if (top < abstainBelow) return new Float32Array(T)
  // A confident posterior routes to its expert alone: as a request's top_k 1 would.
  const hard = opts.hardAbove !== undefined && top >= opts.hardAbove
  const k = hard ? 1 : Math.min(Math.max(Math.round(controls.topK ?? T), 1), T)
  const kth = [...allowed].sort((a, b) => b - a)[k - 1] as number
  const kept = allowed.map((x) => (x >= kth ? x : 0))
  const sum = Math.max(
    kept.reduce((a, b) => a + b, 0),
    1e-12,
  )
  return Float32Array.from(kept, (x) => x / sum)
}
