/**
 * The generation engine: continuous batching over one decoder graph with a KV cache per sequence.
 *
 * A loop of steps runs while any sequence is admitted. Each step
 * 1. frees every sequence whose request was cancelled (AbortSignal, or its reader stopped listening);
 * 2. prefills waiting sequences, oldest first, up to `prefillTokensPerStep` prompt tokens (always at least one
 *    sequence), each in its own pass: a twin graph routes a sequence once, from its whole prompt, at prefill,
 *    and the weights it applied are then held as that row's explicit `mix_weights` for every decode step (a
 *    package with `router.promptLikelihood` routes by each expert's likelihood of the prompt instead: the step's
 *    such prompts are scored together in one more pass of T rows each, prompt-likelihood.ts, on the decoder's
 *    likelihood graph when it has one, so that only per-token log-probabilities come back (grouped by expert when
 *    the runner could rewrite it so, grouped-likelihood-graph.ts: each one-hot row multiplies its own expert's
 *    ranks only); such a prompt counts
 *    T + 1 times its tokens against the budget; with `routerAbove`, a cascade, it is prefilled with the graph's
 *    router first and keeps that prefill when the router's largest weight reaches it, else is scored and prefilled
 *    again, counting T + 2 times; with `bag`, a prompt the bag-of-ids classifier is sure of (prompt-bag.ts,
 *    microseconds of JavaScript at admission) is prefilled once under that expert's one-hot mix, unscored, and
 *    counts its tokens once);
 * 3. decodes one token for every sequence that was already running, all in one batched pass: rows of different
 *    lengths are left-padded (mask 0), rows of different mixes sit side by side (the controls are per row).
 * So sequences join and leave the batch at step boundaries, and a long prompt costs the running sequences one
 * prefill of delay per step at most, never a stall until it is done.
 *
 * The batched past persists between decode passes: while the rows are the same sequences in the same order, the
 * next pass's past is this pass's with the pass's new keys and values appended to every row ([B, H, P + 1, hd],
 * every row's padding unchanged since each row grew by one), written into buffers that are reused
 * (batched-past.ts); a graph rewritten by exposeNewKv (new-kv-outputs.ts) returns only those new positions, so a
 * step allocates no past-sized memory at all. Only when a sequence joins or leaves is the batch rebuilt from the per-sequence
 * caches (each row right-aligned, left-padded). At concurrency 32 that gather copied every row's whole cache on
 * every step; now it happens a few times per batch lifetime (`counters.gathers`). `reuseBatch: false` rebuilds on
 * every pass, as before, for bench:generate's before/after comparison.
 *
 * Admission reserves the sequence's whole cache (kv-budget.ts): over budget is a 503 before anything runs.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { RowControls } from '../twin-contract/encode-controls.ts'
import { BatchedPast } from './batched-past.ts'
import type { DecoderFeeds, DecoderGraph, DecoderOutputs } from './decoder-graph.ts'
import { EventChannel } from './event-channel.ts'
import { KvBudget, type KvBudgetOptions } from './kv-budget.ts'
import { type MergedMix, MergedMixes, type MergedMixesOptions } from './merged-mixes.ts'
import { type PromptBag, readPromptBag, sureExpert } from './prompt-bag.ts'
import {
  likelihoodWeights,
  type PromptEvidence,
  type PromptLikelihoodOptions,
  promptEvidenceBatch,
} from './prompt-likelihood.ts'
import { Sampler, type SamplingParams, sequenceRng, type TokenChoice } from './sampler.ts'
import { SequenceCache } from './sequence-cache.ts'
import { type Detokenizer, TextStream } from './text-stream.ts'

export interface GenerationRequest {
  /** The prompt's token ids (BOS included when the model wants it). */
  promptIds: readonly number[]
  /** Tokens to generate at most (≥ 1). */
  maxTokens: number
  sampling: SamplingParams
  /** Stop strings: the text ends before the first one found (needs the engine's detokenizer). */
  stop?: readonly string[]
  /** Ids that end the sequence (not part of its text), e.g. `<|eos|>`, `<|end|>`. */
  stopTokenIds?: readonly number[]
  /** The prefill row's twin controls: the router's (`useRouter: 1`, …), an explicit mix, or {} (shared). */
  controls?: RowControls
  signal?: AbortSignal
}

export type FinishReason = 'stop' | 'length' | 'cancelled'

export type GenerationEvent =
  | {
      type: 'start'
      promptTokens: number
      /** The weights the sequence applies ([T], twin graphs), held from prefill to the end. */
      expertWeights?: Float32Array
    }
  | ({
      type: 'token' /** New text released with this token (may be ''). */
      text: string
    } & TokenChoice)
  | {
      type: 'end'
      reason: FinishReason
      completionTokens: number /** The last text released. */
      text: string
    }
  | { type: 'error'; error: AppError }

export interface EngineOptions extends KvBudgetOptions {
  /** The context the positions must stay within (prompt + max_tokens ≤ this). */
  maxContext: number
  /** Prompt tokens prefilled per step (fairness between new and running sequences). */
  prefillTokensPerStep: number
  detokenizer?: Detokenizer
  /** Feed a pass's `present` back as the next pass's past while the rows are unchanged (default true). */
  reuseBatch?: boolean
  /**
   * Route router rows by each expert's likelihood of the prompt instead of the graph's router
   * (prompt-likelihood.ts; the package's `router.promptLikelihood`).
   */
  promptLikelihood?: PromptLikelihoodOptions
  /**
   * Score prompts in the decoder's likelihood graph when it has one (`DecoderGraph.scorer`; default true): false
   * fetches the logits and takes the log-softmax in JavaScript, the path before (bench:generate's before/after).
   */
  likelihoodInGraph?: boolean
  /**
   * Decode passes whose rows all apply one mix run on the graph's merged decode graph, with that mix's merged
   * matrices (merged-mixes.ts), when it has one; `false` decodes factored always (bench:generate's before/after).
   */
  merge?: MergedMixesOptions | false
  /** Told of every sequence as it ends (the runner's metrics); what it throws is ignored. */
  onFinish?: (stats: SequenceStats) => void
}

/** A finished sequence, for metrics. */
export interface SequenceStats {
  promptTokens: number
  /** Tokens sampled (a stop token included). */
  completionTokens: number
  /** How it ended; 'error' when a pass failed under it. */
  reason: FinishReason | 'error'
  /** Seconds from admission to its first token; undefined when none came. */
  ttftSeconds?: number
  /** Mean seconds between its tokens after the first; undefined with fewer than two. */
  secondsPerToken?: number
}

/**
 * How far a baked session's logits may be from the merged pass's on its first pass (merged-mixes.ts). The two
 * compute the same sums in another order: on zoo/lm they differ by under 1e-5 (logits up to ~20).
 */
const BAKED_TOLERANCE = 1e-3

function sameMix(a: ArrayLike<number> | undefined, b: ArrayLike<number>): boolean {
  if (!a || a.length !== b.length) return false
  for (let i = 0; i < a.length; i++)
    if (Math.fround(a[i] as number) !== Math.fround(b[i] as number)) return false
  return true
}

/** The last decode pass's rows and its past grown by that pass: the next pass's past if the rows are the same. */
interface DecodeBatch {
  rows: Sequence[]
  /** Positions per row in `kv` (the longest row's cached length; shorter rows are left-padded). */
  past: number
  /** 2·layers arrays k0, v0, …; each [B, H, past, hd] (views of `BatchedPast` buffers). */
  kv: Float32Array[]
}

interface Sequence {
  request: GenerationRequest
  channel: EventChannel<GenerationEvent>
  sampler: Sampler
  text?: TextStream
  reserved: number
  cache?: SequenceCache
  /** The last sampled token, not yet in the cache. */
  pending: number
  generated: number
  decodeControls: RowControls
  /** The bag-of-ids classifier was sure: this one-hot mix, no scoring pass (`promptLikelihood.bag`). */
  bagMix?: Float32Array
  cancelled: boolean
  /** A pass failed under it (guard): it ends with an error event. */
  failed?: boolean
  done: boolean
  /** performance.now() at admission, at its first token and at its last. */
  admittedAt: number
  firstAt?: number
  lastAt?: number
}

export class GenerationEngine {
  private readonly budget: KvBudget
  private readonly waiting: Sequence[] = []
  private readonly running: Sequence[] = []
  private loop: Promise<void> | undefined
  private idleWaiters: (() => void)[] = []
  private batch: DecodeBatch | undefined
  private readonly pastBuffers: BatchedPast
  private readonly bag: PromptBag | undefined
  /** Undefined when the graph has no merged decode graph, merging is off, or a merge failed. */
  private mixes: MergedMixes | undefined
  /** Steps run, rows decoded, and decode passes whose past was rebuilt from the sequences' caches. */
  readonly counters = {
    steps: 0,
    prefills: 0,
    /** Prefills routed by the prompt's likelihood (one extra pass of T rows each). */
    likelihoodPasses: 0,
    /** Cascade (`promptLikelihood.routerAbove`): router prefills kept because the router was sure (no scoring). */
    routerKept: 0,
    /** `promptLikelihood.bag`: prompts routed by the bag-of-ids classifier, unscored (one prefill each). */
    bagSkipped: 0,
    decodeRows: 0,
    decodePasses: 0,
    /** Decode passes run on the merged decode graph (every row applied one mix). */
    mergedPasses: 0,
    /** Mixes merged (each a run of the merge graph). */
    merges: 0,
    /** Merges that failed: the engine then decodes factored only, as it did before the merged decode graph. */
    mergeFailures: 0,
    /** Merged passes run on a session with their mix baked in (merged-mixes.ts). */
    bakedPasses: 0,
    /** Prefills of an explicit mix the engine keeps merged, run on its merged or baked session. */
    mergedPrefills: 0,
    gathers: 0,
  }

  constructor(
    readonly graph: DecoderGraph,
    readonly options: EngineOptions,
  ) {
    this.budget = new KvBudget(options)
    this.pastBuffers = new BatchedPast(graph.layout)
    const bag = options.promptLikelihood?.bag
    this.bag = bag ? readPromptBag(bag, graph.experts) : undefined
    this.mixes =
      graph.merged && options.merge !== false
        ? new MergedMixes(graph.merged, graph.experts, options.merge ?? {})
        : undefined
  }

  /** Sequences admitted and not finished (waiting for prefill or decoding). */
  get activeSequences(): number {
    return this.budget.activeSequences
  }

  /** KV-cache bytes reserved by admitted sequences. */
  get kvBytes(): number {
    return this.budget.reservedBytes
  }

  /** Sequences waiting for their prefill, and decoding. */
  get sequences(): { waiting: number; running: number } {
    return { waiting: this.waiting.length, running: this.running.length }
  }

  /** Resolves when no sequence is admitted. */
  idle(): Promise<void> {
    if (this.activeSequences === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  /**
   * Admits a sequence; its events arrive on the returned iterable (leaving the loop early cancels it).
   * @throws AppError INVALID_REQUEST for a prompt or length the model cannot take
   * @throws AppError RUNNER_OVERLOADED when the sequence or KV budget is full (503, Retry-After)
   */
  submit(request: GenerationRequest): AsyncIterable<GenerationEvent> {
    const n = request.promptIds.length
    const { maxContext } = this.options
    if (n === 0) throw new AppError('INVALID_REQUEST', 'the prompt has no tokens')
    if (!Number.isInteger(request.maxTokens) || request.maxTokens < 1)
      throw new AppError(
        'INVALID_REQUEST',
        `max_tokens must be at least 1 (got ${request.maxTokens})`,
      )
    if (n + request.maxTokens > maxContext)
      throw new AppError(
        'INVALID_REQUEST',
        `the prompt is ${n} tokens and max_tokens ${request.maxTokens}: together ${n + request.maxTokens}, over the model's context of ${maxContext} tokens`,
      )
    if (request.stop?.length && !this.options.detokenizer)
      throw new AppError('INVALID_REQUEST', 'stop strings need a tokenizer; this model has none')
    const V = this.graph.vocab
    for (const id of request.sampling.logitBias?.keys() ?? [])
      if (V !== undefined && id >= V)
        throw new AppError(
          'INVALID_REQUEST',
          `logit_bias: token id ${id} is not in the model's vocabulary (ids 0 to ${V - 1})`,
        )
    if (request.signal?.aborted) throw new AppError('CLIENT_CLOSED', 'the request was cancelled')
    const reserved = (n + request.maxTokens) * this.graph.bytesPerToken
    this.budget.reserve(reserved)
    const seed = request.sampling.seed ?? Math.floor(Math.random() * 2 ** 32)
    const seq: Sequence = {
      request,
      channel: new EventChannel(() => this.cancel(seq)),
      sampler: new Sampler(request.sampling, sequenceRng(seed), request.promptIds),
      ...(this.options.detokenizer
        ? { text: new TextStream(this.options.detokenizer, request.stop ?? []) }
        : {}),
      reserved,
      pending: -1,
      generated: 0,
      decodeControls: {},
      cancelled: false,
      done: false,
      admittedAt: performance.now(),
    }
    const bagMix = this.bagMix(request)
    if (bagMix) seq.bagMix = bagMix
    request.signal?.addEventListener('abort', () => this.cancel(seq), { once: true })
    this.waiting.push(seq)
    this.kick()
    return seq.channel
  }

  /** Marks a sequence cancelled; the next step boundary frees it. */
  private cancel(seq: Sequence): void {
    if (seq.done) return
    seq.cancelled = true
    this.kick()
  }

  private kick(): void {
    if (this.loop) return
    this.loop = this.runLoop().finally(() => {
      this.loop = undefined
      if (this.waiting.length + this.running.length > 0) this.kick()
    })
  }

  private async runLoop(): Promise<void> {
    while (this.waiting.length + this.running.length > 0) {
      await this.step()
      // Let the event loop write answers and read new requests between steps.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  private async step(): Promise<void> {
    this.counters.steps++
    for (const s of [...this.waiting, ...this.running])
      if (s.cancelled || s.request.signal?.aborted) this.finish(s, 'cancelled')
    const decoding = [...this.running]
    let budget = this.options.prefillTokensPerStep
    const prefills: Sequence[] = []
    for (const s of this.waiting) {
      // A prompt routed by its likelihood is run T + 1 times (T scoring rows, then the prefill; one more row with
      // `routerWeight`, one more prefill with `routerAbove` at worst): it costs that much.
      const n =
        s.request.promptIds.length *
        (this.byLikelihood(s.request) && !s.bagMix
          ? this.likelihoodRows() + 1 + (this.options.promptLikelihood?.routerAbove ? 1 : 0)
          : 1)
      if (prefills.length > 0 && n > budget) break
      prefills.push(s)
      budget -= n
    }
    this.waiting.splice(0, prefills.length)
    // Cascade: a likelihood-routed prompt is prefilled with the graph's router first; a sure router keeps that
    // prefill (mix and KV), and only the others are scored and prefilled again below.
    const routerAbove = this.options.promptLikelihood?.routerAbove
    if (routerAbove !== undefined)
      for (const s of prefills)
        if (!s.done && !s.cancelled && !s.bagMix && this.byLikelihood(s.request))
          await this.guard([s], async () => {
            const out = await this.runPrefill(s, s.request.controls ?? {})
            const w = out.weights?.subarray(0, this.graph.experts)
            if (w && Math.max(...w) >= routerAbove) {
              this.counters.routerKept++
              this.commitPrefill(s, out)
            }
          })
    // The step's likelihood-routed prompts are scored together, in one pass of T rows per prompt.
    const scored = prefills.filter(
      (s) => !s.done && !s.cancelled && !s.cache && !s.bagMix && this.byLikelihood(s.request),
    )
    const evidence = new Map<Sequence, PromptEvidence>()
    if (scored.length > 0)
      await this.guard(scored, async () => {
        const like = this.options.promptLikelihood
        const ev = await promptEvidenceBatch(
          this.graph,
          scored.map((s) => s.request.promptIds),
          (like?.routerWeight ?? 0) !== 0,
          this.options.likelihoodInGraph !== false,
        )
        this.counters.likelihoodPasses++
        scored.forEach((s, k) => {
          evidence.set(s, ev[k] as PromptEvidence)
        })
      })
    for (const s of prefills)
      if (!s.done && !s.cache) await this.guard([s], () => this.prefill(s, evidence.get(s)))
    const live = decoding.filter((s) => !s.done && !s.cancelled)
    if (live.length > 0) await this.guard(live, () => this.decode(live))
  }

  /** Runs a pass; if it throws, its sequences end with the error (the others go on). */
  private async guard(seqs: Sequence[], pass: () => Promise<void>): Promise<void> {
    try {
      await pass()
    } catch (err) {
      const error =
        err instanceof AppError
          ? err
          : new AppError('INTERNAL', 'generation failed', { cause: err })
      for (const s of seqs)
        if (!s.done) {
          s.channel.push({ type: 'error', error })
          s.failed = true
          this.finish(s, 'cancelled')
        }
    }
  }

  private async prefill(s: Sequence, evidence?: PromptEvidence): Promise<void> {
    if (s.cancelled) {
      this.finish(s, 'cancelled')
      return
    }
    if (s.bagMix) {
      this.counters.bagSkipped++
      this.commitPrefill(s, await this.runPrefill(s, { mixWeights: s.bagMix }))
      return
    }
    this.commitPrefill(s, await this.runPrefill(s, await this.prefillControls(s.request, evidence)))
  }

  /**
   * The one-hot mix of the expert the bag-of-ids classifier gives probability ≥ `skipAbove`, for a prompt routed by
   * likelihood; undefined when there is no classifier, it is less sure, or the request's expert mask excludes that
   * expert (the prompt is then scored). A one-hot mix passes the request's other controls unchanged (top_k ≥ 1 keeps
   * it, and its one weight is above any abstain threshold).
   */
  private bagMix(request: GenerationRequest): Float32Array | undefined {
    const bag = this.bag
    const skipAbove = this.options.promptLikelihood?.bag?.skipAbove
    if (!bag || skipAbove === undefined || !this.byLikelihood(request)) return undefined
    const top = sureExpert(bag, request.promptIds, skipAbove)
    if (top === undefined) return undefined
    if (Number(request.controls?.expertMask?.[top] ?? 1) === 0) return undefined
    const mix = new Float32Array(bag.experts)
    mix[top] = 1
    return mix
  }

  /**
   * One prefill pass of a sequence's prompt under `controls`; nothing is kept yet (`commitPrefill`). An explicit mix
   * the engine keeps merged (a tenant's pinned mix) is prefilled on its merged or baked session, as its decode
   * passes run; the weights it applies are then that mix, as the twin graph would have returned them.
   */
  private async runPrefill(s: Sequence, controls: RowControls): Promise<DecoderOutputs> {
    const { layers } = this.graph.layout
    const ids = s.request.promptIds
    const n = ids.length
    const feeds: DecoderFeeds = {
      batch: 1,
      seq: n,
      past: 0,
      ids: BigInt64Array.from(ids, BigInt),
      mask: new BigInt64Array(n).fill(1n),
      positions: BigInt64Array.from({ length: n }, (_, i) => BigInt(i)),
      cache: Array.from({ length: 2 * layers }, () => new Float32Array(0)),
      controls: [controls],
    }
    const mix = controls.mixWeights
    const kept = mix && Object.keys(controls).length === 1 ? this.mixes?.get(mix) : undefined
    if (!kept) return this.graph.run(feeds)
    this.counters.mergedPrefills++
    const out = await this.runMerged(feeds, kept)
    return out.weights ? out : { ...out, weights: Float32Array.from(mix ?? []) }
  }

  /** Keeps a prefill: its KV, its mix for every decode step, the start event and the first token. */
  private commitPrefill(s: Sequence, out: DecoderOutputs): void {
    const n = s.request.promptIds.length
    this.counters.prefills++
    const cache = new SequenceCache(this.graph.layout, n + s.request.maxTokens)
    cache.append(out.added, 0, n, 0, n)
    s.cache = cache
    const weights = out.weights?.slice(0, this.graph.experts)
    // The mix is chosen once, from the prompt; every decode step applies exactly these weights.
    if (weights) s.decodeControls = { mixWeights: weights }
    s.channel.push({
      type: 'start',
      promptTokens: n,
      ...(weights ? { expertWeights: weights } : {}),
    })
    if (s.cancelled) {
      this.finish(s, 'cancelled')
      return
    }
    this.running.push(s)
    this.accept(s, out, 0, n, n - 1)
  }

  /**
   * The prefill row's controls: a router row of a package that routes by the prompt's likelihood gets that mix
   * as explicit weights, from the step's batched scoring pass (`evidence`; scored here, alone, if the step did
   * not); an explicit mix, the shared model, and a one-token prompt (no token to score) keep the request's.
   */
  private async prefillControls(
    request: GenerationRequest,
    evidence?: PromptEvidence,
  ): Promise<RowControls> {
    const controls = request.controls ?? {}
    const like = this.options.promptLikelihood
    if (!like || !this.byLikelihood(request)) return controls
    let ev = evidence
    if (!ev) {
      ev = (
        await promptEvidenceBatch(
          this.graph,
          [request.promptIds],
          (like.routerWeight ?? 0) !== 0,
          this.options.likelihoodInGraph !== false,
        )
      )[0] as PromptEvidence
      this.counters.likelihoodPasses++
    }
    return { mixWeights: likelihoodWeights(ev, like, controls) }
  }

  /** Rows of the likelihood pass: T, and the router's when the options weigh it in. */
  private likelihoodRows(): number {
    return this.graph.experts + ((this.options.promptLikelihood?.routerWeight ?? 0) !== 0 ? 1 : 0)
  }

  /** Whether a request's prefill routes by the prompt's likelihood: a router row of two tokens or more. */
  private byLikelihood(request: GenerationRequest): boolean {
    return (
      this.options.promptLikelihood !== undefined &&
      this.graph.isTwin &&
      request.controls?.useRouter === 1 &&
      request.promptIds.length >= 2
    )
  }

  /** The past for a decode pass over `seqs`: the last pass's `present` when the rows are the same, else a gather. */
  private pastFor(seqs: readonly Sequence[]): { past: number; kv: Float32Array[] } {
    const last = this.batch
    this.batch = undefined
    if (
      last &&
      this.options.reuseBatch !== false &&
      last.rows.length === seqs.length &&
      last.rows.every((s, b) => s === seqs[b])
    )
      return last
    this.counters.gathers++
    const B = seqs.length
    const past = Math.max(...seqs.map((s) => s.cache?.length ?? 0))
    const kv = this.pastBuffers.fresh(B, past)
    for (const [b, s] of seqs.entries()) s.cache?.gather(kv, b, past)
    return { past, kv }
  }

  private async decode(seqs: Sequence[]): Promise<void> {
    const B = seqs.length
    const lengths = seqs.map((s) => s.cache?.length ?? 0)
    const { past: P, kv } = this.pastFor(seqs)
    // Row b is left-padded by P − its length, in a rebuilt past and (unchanged) in a reused one.
    const mask = new BigInt64Array(B * (P + 1))
    for (const [b, len] of lengths.entries())
      mask.fill(1n, b * (P + 1) + (P - len), (b + 1) * (P + 1))
    const merged = await this.mergedFor(seqs)
    const feeds: DecoderFeeds = {
      batch: B,
      seq: 1,
      past: P,
      ids: BigInt64Array.from(seqs, (s) => BigInt(s.pending)),
      mask,
      // Positions count the row's real tokens before the new one: its cached length.
      positions: BigInt64Array.from(lengths, BigInt),
      cache: kv,
      controls: seqs.map((s) => s.decodeControls),
    }
    const out = await this.runMerged(feeds, merged)
    this.counters.decodePasses++
    if (merged) {
      this.counters.mergedPasses++
      if (merged.baked) this.counters.bakedPasses++
      if (merged.candidate) await this.check(merged, feeds, out)
      this.mixes?.ran(merged)
    }
    this.counters.decodeRows += B
    // The next past is this one with the pass's new position appended to every row (each row grew by one, so
    // its left padding still holds), written into the other set of buffers.
    this.batch = { rows: seqs, past: P + 1, kv: this.pastBuffers.grow(kv, out.added, B, P) }
    seqs.forEach((s, b) => {
      if (s.done) return
      // The sequence's own cache stays whole too: the next rebuild (a row joins or leaves) reads it.
      s.cache?.append(out.added, b, 1, 0, 1)
      this.accept(s, out, b, 1, 0)
    })
  }

  /**
   * A pass, on a kept mix's session when there is one. A baked session that fails costs speed, never a request: it
   * is closed, baking stops, and the pass runs again on the merged decode graph with the mix's matrices.
   */
  private async runMerged(feeds: DecoderFeeds, merged: MergedMix | undefined) {
    try {
      return await this.graph.run(feeds, merged)
    } catch (err) {
      if (!merged?.baked) throw err
      this.mixes?.failed(merged)
      return await this.graph.run(feeds, merged)
    }
  }

  /**
   * A new baked session's first pass, run again on it beside the merged pass that served: it serves the mix's next
   * passes only if its logits agree (a baked graph folds the mix as a constant, which the rewrite expects every
   * graph to broadcast; this checks it on real rows). A run that fails counts as disagreeing.
   */
  private async check(m: MergedMix, feeds: DecoderFeeds, served: DecoderOutputs): Promise<void> {
    const candidate = m.candidate
    if (!candidate) return
    let agreed = false
    try {
      const got = await this.graph.run({ ...feeds, keys: false }, { ...m, baked: candidate })
      agreed = got.logits.length === served.logits.length
      for (let i = 0; agreed && i < got.logits.length; i++)
        agreed =
          Math.abs((got.logits[i] as number) - (served.logits[i] as number)) <= BAKED_TOLERANCE
    } catch {
      agreed = false
    }
    this.mixes?.verified(m, agreed)
  }

  /**
   * The kept mix for a decode pass whose rows all apply one explicit mix (each row's mix is held bit for bit from
   * its prefill): kept from before, or merged now when the batch has enough steps left to repay the merge;
   * undefined runs the pass factored. Bit-equal mixes only, so the merged pass computes what the factored one
   * would, to float32 rounding (merged-decode-graph.test.ts).
   */
  private async mergedFor(seqs: readonly Sequence[]): Promise<MergedMix | undefined> {
    const mixes = this.mixes
    const mix = seqs[0]?.decodeControls.mixWeights
    if (!mixes || !mix) return undefined
    for (const s of seqs) {
      const c = s.decodeControls
      if (Object.keys(c).length !== 1 || !sameMix(c.mixWeights, mix)) return undefined
    }
    const kept = mixes.get(mix)
    if (kept) return kept
    const left = Math.max(...seqs.map((s) => s.request.maxTokens - s.generated))
    if (!mixes.worthMerging(left)) return undefined
    this.counters.merges++
    try {
      return await mixes.merge(mix)
    } catch {
      // The factored graph computes the same: a broken merge session costs speed, never a request.
      this.counters.mergeFailures++
      mixes.close()
      this.mixes = undefined
      return undefined
    }
  }

  /** Samples row b's token at position `at` of a pass of S new tokens per row ([B, S, V] logits), reports it, and ends the sequence if it is done. */
  private accept(s: Sequence, out: DecoderOutputs, b: number, S: number, at: number): void {
    if (s.cancelled) {
      this.finish(s, 'cancelled')
      return
    }
    const V = out.vocab
    const row = out.logits.subarray((b * S + at) * V, (b * S + at + 1) * V)
    const choice = s.sampler.sample(row)
    s.generated++
    s.lastAt = performance.now()
    s.firstAt ??= s.lastAt
    if (s.request.stopTokenIds?.includes(choice.id)) {
      this.finish(s, 'stop')
      return
    }
    const piece = s.text?.push(choice.id) ?? { delta: '', stopped: false }
    s.channel.push({ type: 'token', text: piece.delta, ...choice })
    if (piece.stopped) {
      this.finish(s, 'stop', false)
      return
    }
    if (s.generated >= s.request.maxTokens) {
      this.finish(s, 'length')
      return
    }
    s.pending = choice.id
  }

  private report(s: Sequence, reason: FinishReason): void {
    const report = this.options.onFinish
    if (!report) return
    const { firstAt, lastAt } = s
    try {
      report({
        promptTokens: s.request.promptIds.length,
        completionTokens: s.generated,
        reason: s.failed ? 'error' : reason,
        ...(firstAt !== undefined ? { ttftSeconds: (firstAt - s.admittedAt) / 1000 } : {}),
        ...(firstAt !== undefined && lastAt !== undefined && s.generated > 1
          ? { secondsPerToken: (lastAt - firstAt) / 1000 / (s.generated - 1) }
          : {}),
      })
    } catch {
      // Metrics never end a sequence badly.
    }
  }

  /** Ends a sequence: frees its cache and reservation at once, and tells its reader. */
  private finish(s: Sequence, reason: FinishReason, flush = true): void {
    if (s.done) return
    // The text first: should the detokenizer throw, the sequence is still live, and the pass's guard ends it with
    // the error (a sequence marked done before the throw would never tell its reader: its request hung).
    const text = flush && reason !== 'cancelled' ? (s.text?.finish() ?? '') : ''
    s.done = true
    for (const list of [this.waiting, this.running]) {
      const i = list.indexOf(s)
      if (i >= 0) list.splice(i, 1)
    }
    s.cache = undefined
    // A batch holding a finished row is never reused: drop it now rather than at the next pass.
    if (this.batch?.rows.includes(s)) this.batch = undefined
    this.budget.release(s.reserved)
    s.channel.push({ type: 'end', reason, completionTokens: s.generated, text })
    s.channel.close()
    this.report(s, reason)
    if (this.activeSequences === 0) {
      this.batch = undefined
      this.pastBuffers.release()
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }
}
