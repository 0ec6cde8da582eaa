/**
 * A served decoder package that generates text: its twin graph driven by a GenerationEngine, its tokenizer and
 * chat template (LmProfile), and the translation of a request's merge controls into the prefill row's controls.
 * The router (the default) picks the mix once from the prompt (or, where the package says so, each expert's
 * likelihood of the prompt does: prompt-likelihood.ts); an explicit `experts` mix is used as given;
 * `variant: "shared"` is the twin graph at all-zero weights. A `merge_method` (materialised merge) or a static
 * variant would need a second graph per sequence and is refused for generation.
 * @module
 */
import { AppError, type MergeSelection, parseMergeControls } from '@twinserve/shared'
import { rowControls } from '../model/controls.ts'
import type { ServedModel } from '../model/served-model.ts'
import type { RowControls } from '../twin-contract/encode-controls.ts'
import { DecoderGraph } from './decoder-graph.ts'
import {
  type EngineOptions,
  GenerationEngine,
  type GenerationEvent,
  type GenerationRequest,
} from './engine.ts'
import type { LmProfile } from './lm-profile.ts'

export interface TextGeneratorOptions {
  maxSequences: number
  maxBytes: number
  prefillTokensPerStep: number
  /** Told of every sequence as it ends (the runner's metrics). */
  onFinish?: EngineOptions['onFinish']
  /** Sessions with a hot mix baked in (merged-mixes.ts `maxBaked`); default BAKED_MIXES. */
  bakedMixes?: number
}

export class TextGenerator {
  readonly engine: GenerationEngine

  constructor(
    readonly model: ServedModel,
    readonly profile: LmProfile,
    options: TextGeneratorOptions,
  ) {
    const { session, controls, likelihood, likelihoodGrouped, merged } = model.twinGraph
    if (!DecoderGraph.isDecoder(session))
      throw new AppError(
        'INVALID_MODEL',
        `model '${model.name}' is not a decoder with a KV cache (input_ids and past_key_values.N.*); it cannot generate`,
      )
    const graph = new DecoderGraph(
      session,
      controls,
      model.manifest.experts.length,
      likelihood,
      likelihoodGrouped,
      merged,
    )
    const { bakedMixes, ...engineOptions } = options
    this.engine = new GenerationEngine(graph, {
      ...engineOptions,
      ...(bakedMixes !== undefined ? { merge: { maxBaked: bakedMixes } } : {}),
      maxContext: profile.maxContext,
      detokenizer: profile,
      // The package says how its sequences are routed: by the graph's router, or by the prompt's likelihood.
      ...(model.manifest.router.promptLikelihood
        ? { promptLikelihood: model.manifest.router.promptLikelihood }
        : {}),
    })
  }

  get name(): string {
    return this.model.name
  }

  /**
   * The prefill row's controls for a request's merge controls (the `twinserve` field, or a generate request's
   * non-sampling parameters).
   * @throws AppError INVALID_REQUEST / UNKNOWN_EXPERT naming the problem
   */
  controlsFor(parameters: Record<string, unknown> | undefined): RowControls {
    const selection: MergeSelection = parseMergeControls(parameters)
    const m = this.model.manifest
    if (selection.kind === 'variant') {
      if (selection.variant === 'shared') return {}
      throw new AppError(
        'INVALID_REQUEST',
        `generation serves the twin graph of model '${m.name}' (router, explicit experts, or variant 'shared'), not variant '${selection.variant}'`,
      )
    }
    if (selection.kind === 'materialized')
      throw new AppError(
        'INVALID_REQUEST',
        `generation does not run merge_method (a materialised merge per request); give experts without merge_method for an explicit mix`,
      )
    if (selection.kind === 'fan_out')
      throw new AppError(
        'INVALID_REQUEST',
        'generation does not fan out (one text per expert); ask each expert with an explicit experts mix',
      )
    const fallback = m.router.abstainBelow
    const routed =
      selection.kind === 'router' && selection.abstainBelow === undefined && fallback !== undefined
        ? { ...selection, abstainBelow: fallback }
        : selection
    return rowControls(routed, m.experts, m.name)
  }

  /** Applied weights by expert name. */
  weightsByName(weights: Float32Array | undefined): Record<string, number> {
    const out: Record<string, number> = {}
    for (const e of this.model.manifest.experts) out[e.name] = weights?.[e.index] ?? 0
    return out
  }

  /**
   * Checks the prompt against the context and admits the sequence.
   * @throws AppError INVALID_REQUEST (prompt over the context, max_tokens) or RUNNER_OVERLOADED (503)
   */
  start(request: GenerationRequest): AsyncIterable<GenerationEvent> {
    const n = request.promptIds.length
    const ctx = this.profile.maxContext
    if (n >= ctx)
      throw new AppError(
        'INVALID_REQUEST',
        `the prompt is ${n} tokens, over the context limit of model '${this.name}' (${ctx} tokens, prompt and completion together)`,
      )
    return this.engine.submit({
      ...request,
      stopTokenIds: request.stopTokenIds ?? this.profile.stopTokenIds,
    })
  }

  /** The longest completion that still fits after a prompt of n tokens. */
  room(n: number): number {
    return Math.max(1, this.profile.maxContext - n)
  }
}
