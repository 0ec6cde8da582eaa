/**
 * A twin package being served: its onnxruntime sessions (the twin graph, the static variants, and lazily the
 * materialised-merge graph), the request → run preparation (input validation, merge controls → per-row graph
 * inputs, the batch key) and the batched run that splits results back per request.
 *
 * Three execution paths, reported as the response parameter `merge_path`:
 * - `factored`: the twin graph, each row with its own router/explicit weights (batches mix freely);
 * - `materialized`: a per-request `merge_method` merge, weights materialised and cached per recipe;
 * - `static`: a variant's plain graph (a static merge built into the package).
 * @module
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  AppError,
  FAN_OUT_SHARED,
  fanOutName,
  type InferenceRequest,
  type MergeSelection,
  type ModelMetadata,
  type PackageManifest,
  parseMergeControls,
  type ResponseOutput,
  type RunParameters,
  type TensorMetadata,
  TWIN_OUTPUT_WEIGHTS,
  type TwinInputKey,
} from '@twinserve/shared'
import { type FactorsWithShared, shapeOf } from '../factors/exclusive-factors.ts'
import type { MergedMatrix } from '../generate/merged-decode-graph.ts'
import type { BakedSession, MergedDecoder } from '../generate/merged-mixes.ts'
import { withoutNewKv } from '../generate/new-kv-outputs.ts'
import { MatmulBackend } from '../merge/matmul.ts'
import { onnx } from '../onnx/proto.ts'
import { packageVersion } from '../package/package-version.ts'
import { sha256 } from '../package/write-package.ts'
import { openSession, ort, type Provider } from '../runtime/ort-session.ts'
import type { ThreadPriority } from '../runtime/session-wire.ts'
import {
  openThreadedSession,
  type RunnableSession,
  SessionThreadStopped,
} from '../runtime/threaded-session.ts'
import type { TextTokenizer } from '../text/text-tokenizer.ts'
import { assertControlsSupported, checkContract } from '../twin-contract/check-contract.ts'
import { encodeControls, type RowControls } from '../twin-contract/encode-controls.ts'
import { expertColumns, rowControls } from './controls.ts'
import { nonFiniteOutputError } from './finite-outputs.ts'
import {
  initializersToInputs,
  type MergeTensorFn,
  materializeMerge,
  readExclusiveFactors,
} from './materialize.ts'
import { MergeCache, recipeKey } from './merge-cache.ts'
import { labelledOutputs, labelsByColumn, type RowLabels, rowLabels } from './routed-labels.ts'
import { concatRows, decodeInputs, type HostTensor, sliceRows } from './tensors.ts'
import { decodeTextInput, sendsText, TEXT_INPUT_METADATA } from './text-inputs.ts'

export type MergePath = 'factored' | 'materialized' | 'static'

/** One request's result: its outputs and the response parameters the run adds. */
export interface RunResult {
  outputs: ResponseOutput[]
  /** Added to the V2 response's `parameters` (`abstained_rows`; shared RunParametersSchema); mostly empty. */
  parameters: RunParameters
  /**
   * For the V2 classification extension, on packages whose experts carry label names: per returned output name
   * (the base model's class scores), per row of this request, the label names of the row's routed task (the
   * expert with the largest applied weight; its task reads the first `labels.length` values), or undefined for
   * a row that applied no expert.
   */
  labels?: Record<string, (readonly string[] | undefined)[]>
  /** Router requests: the weights applied to its rows, [rows, T] (per-expert telemetry). */
  routedWeights?: Float32Array
}

/** A request whose rows the router weighs (its weights feed the per-expert telemetry). */
const routed = (r: { controls?: RowControls; rowControls?: RowControls[] }) =>
  r.controls?.useRouter === 1 && !r.rowControls

/** A router request with an abstain threshold: some of its rows may fall back to the shared model. */
const mayAbstain = (r: { controls?: RowControls }) => (r.controls?.abstainBelow ?? 0) > 0

/** The label of the twin graph where a response names its variant. */
export const TWIN_VARIANT = 'twin'

/** One request, validated and converted, waiting to be batched. */
export interface PreparedRequest {
  model: string
  /** The version it was prepared for: its batch runs on exactly that version, even after a hot swap. */
  version: string
  path: MergePath
  /** `twin` for the twin graph, else the variant's name. */
  variant: string
  /** Requests with equal keys may run in one batch. */
  batchKey: string
  rows: number
  inputs: HostTensor[]
  /** Factored path: this request's per-row controls. */
  controls?: RowControls
  /** Fan-out: one entry per row instead (the input repeated once per label), overriding `controls`. */
  rowControls?: RowControls[]
  /**
   * Fan-out (`fan_out: true`): the caller's rows repeated once per label, in this order (each expert by column,
   * then FAN_OUT_SHARED); each output is answered once per label as `<output>/<label>`.
   */
  fanOut?: { labels: string[]; callerRows: number }
  /** Materialised path: the recipe. */
  recipe?: {
    key: string
    selection: Extract<MergeSelection, { kind: 'materialized' }>
    experts: { name: string; index: number }[]
  }
  /** Expert weights reported for paths that do not compute them per row ([T]). */
  reportedWeights?: Float32Array
  /** Output names to return, in order. */
  outputs: string[]
  /** The tenant the gateway forwards for (signed); owns the merge-cache entry a materialised request creates. */
  tenant?: string
  /** performance.now() when its batch started; stamped by the runner's executor for queue statistics. */
  startedAt?: number
}

/** A decoder's merged decode graph and merge graph, opened (generate/merged-decode-graph.ts). */
export interface MergedSessions {
  decode: ServingSession
  merge: ServingSession
  matrices: readonly MergedMatrix[]
  bytesPerMix: number
  /** Bytes the merge session holds (each expert's whole correction, and the base matrices). */
  mergeBytes: number
  /** Opens a session with one mix baked in (generate/baked-mix-graph.ts). */
  bake?: (mix: Float32Array, matrices: Record<string, Float32Array>) => Promise<ServingSession>
}

/** A session the model runs on, in its own thread (threaded-session.ts) or on the event loop. */
export interface ServingSession {
  session: RunnableSession
  provider: Provider
  fallbackReason?: string
  /** How far below the event loop the session's threads run (threaded sessions only). */
  priority?: ThreadPriority
}

export interface ServedModelInit {
  dir: string
  manifest: PackageManifest
  twin: ServingSession
  variants: Map<string, ServingSession>
  /**
   * A decoder package that routes by the prompt's likelihood: its likelihood graph's session
   * (generate/likelihood-graph.ts), which the generation engine scores prompts with.
   */
  likelihood?: ServingSession
  /** Why such a package has no likelihood graph (the engine then scores from the logits). */
  likelihoodUnavailable?: string
  /**
   * How many corrections the likelihood graph multiplies per expert group, when it is the grouped likelihood graph
   * (generate/grouped-likelihood-graph.ts: one-hot rows, expert-major).
   */
  likelihoodGrouped?: number
  /** Why the likelihood graph is not grouped. */
  likelihoodUngrouped?: string
  /** A decoder's merged decode graph and merge graph (generate/merged-decode-graph.ts). */
  merged?: MergedSessions
  /** What the merged decode graph's rewrite did, or why there is none. */
  mergedDecodeNote?: string
  /**
   * A decoder's twin session: what the decode graph's rewrite did (generate/decode-graph.ts), or why the session
   * runs the graph as served.
   */
  decodeGraph?: string
  /**
   * Whether the sessions run in threads of their own (the default, load-model.ts); the materialised graph then
   * does too, and cached merged weights live in shared memory so that a run does not copy them on the event loop.
   */
  threaded?: boolean
  /** Nice steps below the event loop for the threads the model opens later (materialised graph, products). */
  sessionNice?: number
  /** The package's tokenizer: the model then also takes raw text (input `text`, BYTES [n]). */
  text?: TextTokenizer
  threads?: number
  /** Set when the materialised path is unavailable: the reason, reported in metadata and errors. */
  materializedUnavailable?: string
  merge?: MergeTensorFn
  mergeCache: {
    maxEntries: number
    maxBytes: number
    maxEntriesPerOwner?: number
    onLookup?: (hit: boolean) => void
  }
}

type Feeds = Record<string, ort.Tensor>

/** A Float32Array of n zeros in a SharedArrayBuffer (passed to a session thread without a copy). */
function sharedFloats(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * Float32Array.BYTES_PER_ELEMENT))
}

/** `values` itself when already in shared memory, else a copy there. */
function inSharedMemory(values: Float32Array): Float32Array {
  if (values.buffer instanceof SharedArrayBuffer) return values
  const out = sharedFloats(values.length)
  out.set(values)
  return out
}

export class ServedModel {
  readonly name: string
  /** The package's version id (package-version.ts): what `versions` lists and `/versions/{v}/…` must name. */
  readonly version: string
  readonly manifest: PackageManifest
  readonly provider: Provider
  readonly fallbackReason?: string
  /** How far below the event loop the twin session's threads run, when in threads (runner.ts logs it). */
  readonly sessionPriority?: ThreadPriority
  private readonly T: number
  private readonly twin: ServingSession
  private readonly variants: Map<string, ServingSession>
  private readonly declaredOutputs: TensorMetadata[]
  private readonly cache: MergeCache<Map<string, ort.Tensor>>
  /** Rows of different requests can share a run only if every declared input and output is batched on dim 0. */
  private readonly batchable: boolean
  /** The control inputs this package's twin graph has (older packages lack the optional ones). */
  private readonly controls: readonly TwinInputKey[]
  /** Label names by expert column, when the package has any, and the outputs they name the values of. */
  private readonly labels?: {
    byColumn: readonly (readonly string[] | undefined)[]
    outputs: readonly string[]
  }
  private solo = 0
  /** Sessions with a mix baked in that the generation engine holds open (bakeMix). */
  private readonly baked = new Set<RunnableSession>()
  private closed = false
  private materialized?: Promise<{
    session: RunnableSession
    factors: FactorsWithShared[]
    backend: MatmulBackend
  }>

  constructor(private readonly init: ServedModelInit) {
    this.manifest = init.manifest
    this.name = init.manifest.name
    this.version = packageVersion(init.manifest)
    this.twin = init.twin
    this.provider = init.twin.provider
    if (init.twin.fallbackReason) this.fallbackReason = init.twin.fallbackReason
    if (init.twin.priority) this.sessionPriority = init.twin.priority
    this.variants = init.variants
    this.T = init.manifest.experts.length
    this.declaredOutputs = [
      ...init.manifest.outputs,
      { name: TWIN_OUTPUT_WEIGHTS, datatype: 'FP32', shape: [-1, this.T] },
    ]
    this.cache = new MergeCache(init.mergeCache)
    const byColumn = labelsByColumn(init.manifest)
    if (byColumn) this.labels = { byColumn, outputs: labelledOutputs(init.manifest, byColumn) }
    this.batchable = [...init.manifest.inputs, ...init.manifest.outputs].every(
      (t) => t.shape[0] === -1,
    )
    this.controls = checkContract(
      init.manifest,
      withoutNewKv(init.twin.session),
      new Map([...init.variants].map(([name, v]) => [name, v.session])),
    )
  }

  /** Variant names a request may ask for; `shared` always (served from the twin graph if not built). */
  get variantNames(): string[] {
    const names = [...this.variants.keys()]
    return names.includes('shared') ? names : ['shared', ...names]
  }

  /**
   * The twin graph's session and the controls it has, for the generation engine (generate/), with its likelihood
   * graph's session when the package routes by the prompt's likelihood and the rewrite applied.
   */
  get twinGraph(): {
    session: RunnableSession
    controls: readonly TwinInputKey[]
    likelihood?: RunnableSession
    /** The likelihood session is the grouped likelihood graph (expert-major one-hot rows). */
    likelihoodGrouped: boolean
    merged?: MergedDecoder
  } {
    const m = this.init.merged
    const bake = m?.bake
    return {
      session: this.twin.session,
      controls: this.controls,
      ...(this.init.likelihood ? { likelihood: this.init.likelihood.session } : {}),
      ...(m
        ? {
            merged: {
              decode: m.decode.session,
              merge: m.merge.session,
              matrices: m.matrices,
              ...(bake ? { bake: (mix, values) => this.bakeMix(bake, mix, values) } : {}),
            },
          }
        : {}),
      likelihoodGrouped:
        this.init.likelihood !== undefined && this.init.likelihoodGrouped !== undefined,
    }
  }

  /** Whether the likelihood graph's session is open (a second session in memory). */
  get likelihoodSessionOpen(): boolean {
    return this.init.likelihood !== undefined
  }

  /** Bytes the merged decode graph's merge session holds (0 when it is not open). */
  get mergedSessionBytes(): number {
    return this.init.merged?.mergeBytes ?? 0
  }

  /** The merged decode graph's rewrite, or why there is none (generate/merged-decode-graph.ts). */
  get mergedDecode(): string | undefined {
    return this.init.mergedDecodeNote
  }

  /** A decoder's twin session: the decode graph's rewrite, or why there is none (generate/decode-graph.ts). */
  get decodeGraph(): string | undefined {
    return this.init.decodeGraph
  }

  /**
   * For a package that routes by the prompt's likelihood, how it scores: in its grouped likelihood graph, in its
   * likelihood graph and why not grouped, or from the logits and why.
   */
  get likelihoodScoring(): string | undefined {
    if (!this.manifest.router.promptLikelihood) return undefined
    if (this.init.likelihood && this.init.likelihoodGrouped !== undefined)
      return `likelihood graph, grouped (${this.init.likelihoodGrouped} corrections per expert)`
    if (this.init.likelihood)
      return `likelihood graph (not grouped: ${this.init.likelihoodUngrouped ?? 'unknown'})`
    return `logits (${this.init.likelihoodUnavailable ?? 'no likelihood graph'})`
  }

  get experts(): string[] {
    return [...this.manifest.experts].sort((a, b) => a.index - b.index).map((e) => e.name)
  }

  cacheStats() {
    return this.cache.snapshot()
  }

  /** Whether a materialised recipe is cached or being merged now (a request for it merges nothing new). */
  coversRecipe(key: string): boolean {
    return this.cache.covers(key)
  }

  metadata(): ModelMetadata {
    const m = this.manifest
    return {
      name: m.name,
      versions: [this.version],
      platform: 'onnxruntime_onnx',
      // A text model takes either its token inputs or `text` alone (parameters.tokenizer says so).
      inputs: this.init.text ? [...m.inputs, TEXT_INPUT_METADATA] : m.inputs,
      outputs: this.declaredOutputs,
      parameters: {
        experts: this.experts,
        variants: this.variantNames,
        router: m.router.kind,
        router_feature: m.router.feature,
        ...(m.router.abstainBelow !== undefined ? { abstain_below: m.router.abstainBelow } : {}),
        ...(this.init.text
          ? {
              tokenizer: {
                input: TEXT_INPUT_METADATA.name,
                replaces: m.inputs.map((i) => i.name).join(','),
                max_length: this.init.text.rule.maxLength,
                truncation: this.init.text.rule.truncation,
              },
            }
          : {}),
        provider: this.provider,
        merge_paths: this.init.materializedUnavailable
          ? ['factored', 'static']
          : ['factored', 'materialized', 'static'],
        ...(this.init.materializedUnavailable
          ? { materialized_unavailable: this.init.materializedUnavailable }
          : {}),
      },
    }
  }

  /**
   * Validates a parsed V2 request against this model and converts it, ready to batch.
   * @throws AppError with a 4xx code for anything the caller got wrong
   */
  prepare(request: InferenceRequest): PreparedRequest {
    const selection = parseMergeControls(request.parameters)
    const { tensors, rows } =
      this.init.text && sendsText(request.inputs)
        ? decodeTextInput(request.inputs, this.manifest.inputs, this.init.text)
        : decodeInputs(request.inputs, this.manifest.inputs)
    const outputs = this.selectOutputs(request)
    // A model with a fixed batch dimension runs each request alone: a key no other request has.
    const shapes =
      tensors.map((t) => t.dims.slice(1).join('x')).join(';') +
      (this.batchable ? '' : `|solo:${++this.solo}`)
    const common = { model: this.name, version: this.version, rows, inputs: tensors, outputs }

    if (selection.kind === 'variant') {
      const name = selection.variant
      if (!this.variantNames.includes(name))
        throw new AppError(
          'NOT_FOUND',
          `model '${this.name}' has no variant '${name}'; its variants are ${this.variantNames.join(', ')}`,
        )
      if (!this.variants.has(name))
        // `shared` without a built file: the twin graph at all-zero weights is the shared model exactly.
        return {
          ...common,
          path: 'factored',
          variant: name,
          batchKey: `${this.name}|${this.version}|twin|${shapes}`,
          controls: rowControls({ kind: 'zero' }, this.manifest.experts, this.name),
        }
      return {
        ...common,
        path: 'static',
        variant: name,
        batchKey: `${this.name}|${this.version}|variant:${name}|${shapes}`,
        reportedWeights: new Float32Array(this.T),
      }
    }
    if (selection.kind === 'materialized') {
      if (this.init.materializedUnavailable || !this.init.merge)
        throw new AppError(
          'INVALID_MODEL',
          `model '${this.name}' cannot run merge_method: ${this.init.materializedUnavailable ?? 'no merge engine'}`,
        )
      const names = Object.keys(selection.experts)
      const cols = expertColumns(names, this.manifest.experts, this.name)
      const experts = names.map((name, i) => ({ name, index: cols[i] ?? 0 }))
      const reportedWeights = new Float32Array(this.T)
      names.forEach((n, i) => {
        reportedWeights[cols[i] ?? 0] = selection.experts[n] ?? 0
      })
      const key = recipeKey(selection.spec)
      return {
        ...common,
        path: 'materialized',
        variant: TWIN_VARIANT,
        batchKey: `${this.name}|${this.version}|materialized:${key}|${shapes}`,
        recipe: { key, selection, experts },
        reportedWeights,
      }
    }
    if (selection.kind === 'fan_out') return this.prepareFanOut(request, common)
    const fallback = this.manifest.router.abstainBelow
    const routed =
      selection.kind === 'router' && selection.abstainBelow === undefined && fallback !== undefined
        ? { ...selection, abstainBelow: fallback }
        : selection
    const controls = rowControls(routed, this.manifest.experts, this.name)
    assertControlsSupported(this.name, controls, this.controls)
    return {
      ...common,
      path: 'factored',
      variant: TWIN_VARIANT,
      batchKey: `${this.name}|${this.version}|twin|${shapes}`,
      controls,
    }
  }

  /**
   * Fan-out: the input once per expert (a one-hot mix each) and once for the shared model (all weights 0),
   * stacked on the batch axis, so the whole fan runs as one batch of the twin graph ([(T+1)·n, …]).
   */
  private prepareFanOut(
    request: InferenceRequest,
    common: Pick<PreparedRequest, 'model' | 'version' | 'rows' | 'inputs' | 'outputs'>,
  ): PreparedRequest {
    if (!this.batchable)
      throw new AppError(
        'INVALID_REQUEST',
        `model '${this.name}' has a fixed batch dimension; fan_out stacks one copy of the input per expert on it`,
      )
    if (this.experts.includes(FAN_OUT_SHARED))
      throw new AppError(
        'INVALID_MODEL',
        `model '${this.name}' has an expert named '${FAN_OUT_SHARED}', which a fan-out answer cannot tell from the shared model`,
      )
    if (request.outputs?.some((o) => o.parameters?.classification))
      throw new AppError(
        'INVALID_REQUEST',
        'classification cannot be combined with fan_out; ask for the raw outputs (labelled per expert)',
      )
    const labels = [...this.experts, FAN_OUT_SHARED]
    const n = common.rows
    const rowControls: RowControls[] = []
    for (let k = 0; k < labels.length; k++) {
      // Experts are columns 0…T-1 in index order (`experts`); the last label is the shared model: no controls.
      const controls: RowControls = {}
      if (k < this.T) {
        const mix = new Float32Array(this.T)
        mix[k] = 1
        controls.mixWeights = mix
      }
      for (let i = 0; i < n; i++) rowControls.push(controls)
    }
    const inputs = common.inputs.map((t) => {
      const stacked = concatRows(Array<HostTensor>(labels.length).fill(t))
      return {
        name: t.name,
        type: t.type,
        dims: [...stacked.dims],
        data: stacked.data as HostTensor['data'],
      }
    })
    const shapes = inputs.map((t) => t.dims.slice(1).join('x')).join(';')
    return {
      ...common,
      rows: n * labels.length,
      inputs,
      path: 'factored',
      variant: TWIN_VARIANT,
      batchKey: `${this.name}|${this.version}|twin|${shapes}`,
      rowControls,
      fanOut: { labels, callerRows: n },
    }
  }

  private selectOutputs(request: InferenceRequest): string[] {
    const known = this.declaredOutputs.map((o) => o.name)
    if (!request.outputs || request.outputs.length === 0) return known
    const names = request.outputs.map((o) => o.name)
    const seen = new Set<string>()
    for (const n of names) {
      if (!known.includes(n))
        throw new AppError(
          'INVALID_REQUEST',
          `unknown output '${n}'; model '${this.name}' has outputs ${known.join(', ')}`,
        )
      if (seen.has(n)) throw new AppError('INVALID_REQUEST', `output '${n}' is requested twice`)
      seen.add(n)
    }
    return names
  }

  /**
   * Runs one batch (requests with the same batch key) and splits the outputs back per request.
   * @returns each request's response outputs and parameters, in the batch's order
   */
  async run(batch: readonly PreparedRequest[]): Promise<RunResult[]> {
    const first = batch[0]
    if (!first) return []
    if (batch.some((r) => r.batchKey !== first.batchKey))
      throw new AppError('INTERNAL', 'a batch mixed requests with different batch keys')
    const feeds: Feeds = {}
    first.inputs.forEach((t, i) => {
      feeds[t.name] = concatRows(batch.map((r) => r.inputs[i] as HostTensor))
    })
    const results = await this.runGraph(batch, feeds)
    const totalRows = batch.reduce((a, r) => a + r.rows, 0)
    const out: RunResult[] = []
    let row = 0
    for (const r of batch) {
      const from = row
      row += r.rows
      if (r.fanOut) {
        out.push({ outputs: this.fanOutOutputs(r, r.fanOut, results, from), parameters: {} })
        continue
      }
      const outputs = r.outputs.map((name) => {
        const reported = r.reportedWeights
        if (name === TWIN_OUTPUT_WEIGHTS && reported) {
          const data: number[] = []
          for (let i = 0; i < r.rows; i++) data.push(...reported)
          return { name, datatype: 'FP32' as const, shape: [r.rows, this.T], data }
        }
        const t = results[name]
        if (!t) throw new AppError('INTERNAL', `the model did not return output '${name}'`)
        if (t.dims[0] !== totalRows)
          throw new AppError('INTERNAL', `output '${name}' does not have the batch as dimension 0`)
        return sliceRows(name, t, from, row)
      })
      const applied = results[TWIN_OUTPUT_WEIGHTS]
      const labels = this.rowLabels(r, applied, from)
      out.push({
        outputs,
        parameters: this.rowReport(r, applied, from),
        ...(labels ? { labels } : {}),
        ...(routed(r) && applied?.type === 'float32'
          ? { routedWeights: (applied.data as Float32Array).slice(from * this.T, row * this.T) }
          : {}),
      })
    }
    return out
  }

  /** A fan-out request's outputs: each requested output once per label, its rows sliced out of the run. */
  private fanOutOutputs(
    r: PreparedRequest,
    fan: NonNullable<PreparedRequest['fanOut']>,
    results: Record<string, ort.Tensor>,
    from: number,
  ): ResponseOutput[] {
    const n = fan.callerRows
    return r.outputs.flatMap((name) => {
      const t = results[name]
      if (!t) throw new AppError('INTERNAL', `the model did not return output '${name}'`)
      return fan.labels.map((label, k) => {
        const sliced = sliceRows(fanOutName(name, label), t, from + k * n, from + (k + 1) * n)
        // The label in parameters too, so a client need not parse names.
        const parameters: Record<string, string> =
          label === FAN_OUT_SHARED
            ? { output: name, variant: label }
            : { output: name, expert: label }
        return { ...sliced, parameters }
      })
    })
  }

  /** The batch's graph run: a variant's plain graph, the twin graph, or the materialised-merge graph. */
  private async runGraph(
    batch: readonly PreparedRequest[],
    feeds: Feeds,
  ): Promise<Record<string, ort.Tensor>> {
    const first = batch[0] as PreparedRequest
    const wanted = new Set(batch.flatMap((r) => r.outputs))
    const baseOutputs = this.manifest.outputs.map((o) => o.name).filter((n) => wanted.has(n))
    if (first.path === 'static') {
      const v = this.variants.get(first.variant)
      if (!v) throw new AppError('INTERNAL', `variant '${first.variant}' vanished`)
      return baseOutputs.length > 0 ? await v.session.run(feeds, baseOutputs) : {}
    }
    if (first.path === 'factored') {
      Object.assign(feeds, this.controlFeeds(batch))
      // The applied weights also say which rows abstained, which task each row's labels are, and what the router
      // chose (per-expert telemetry): T floats per row, next to nothing beside the outputs.
      const weights =
        wanted.has(TWIN_OUTPUT_WEIGHTS) ||
        batch.some((r) => mayAbstain(r) || routed(r)) ||
        this.wantsLabels(wanted)
      const fetch = [...baseOutputs, ...(weights ? [TWIN_OUTPUT_WEIGHTS] : [])]
      return this.twin.session.run(feeds, fetch.length ? fetch : [TWIN_OUTPUT_WEIGHTS])
    }
    const { session, weights } = await this.materializedWeights(first)
    Object.assign(
      feeds,
      this.controlFeeds(batch.map((r) => ({ rows: r.rows }))),
      Object.fromEntries(weights),
    )
    return session.run(feeds, baseOutputs.length ? baseOutputs : [TWIN_OUTPUT_WEIGHTS])
  }

  private wantsLabels(outputs: ReadonlySet<string> | readonly string[]): boolean {
    const names = [...outputs]
    return this.labels?.outputs.some((o) => names.includes(o)) ?? false
  }

  /**
   * One request's label names per labelled output it asked for and per row: from the weights its rows applied
   * (the twin graph's `expert_weights`), or the weights reported for the whole request (static, materialised).
   */
  private rowLabels(
    r: PreparedRequest,
    weights: ort.Tensor | undefined,
    from: number,
  ): RowLabels | undefined {
    const labels = this.labels
    if (!labels || !this.wantsLabels(r.outputs)) return undefined
    let perRow: (readonly string[] | undefined)[]
    if (r.reportedWeights)
      perRow = rowLabels(r.reportedWeights, r.rows, this.T, labels.byColumn, true)
    else if (weights?.type === 'float32') {
      const w = weights.data as Float32Array // [batch, T]
      perRow = rowLabels(
        w.subarray(from * this.T, (from + r.rows) * this.T),
        r.rows,
        this.T,
        labels.byColumn,
      )
    } else throw new AppError('INTERNAL', 'the twin graph did not return the applied weights')
    return Object.fromEntries(
      r.outputs.filter((o) => labels.outputs.includes(o)).map((o) => [o, perRow]),
    )
  }

  /**
   * Response parameters from the run, per request: with an abstain threshold, `abstained_rows`, how many of
   * its rows the router was too unsure for (they applied no expert: the shared model).
   */
  private rowReport(
    r: PreparedRequest,
    weights: ort.Tensor | undefined,
    from: number,
  ): RunParameters {
    if (!mayAbstain(r) || weights?.type !== 'float32') return {}
    const w = weights.data as Float32Array // [batch, T]
    let abstained = 0
    for (let i = from; i < from + r.rows; i++)
      if (w.subarray(i * this.T, (i + 1) * this.T).every((x) => x === 0)) abstained++
    return { abstained_rows: abstained }
  }

  /**
   * Runs a batch so that one request cannot fail the others: when a coalesced run fails, each request is run
   * alone, and only those that fail alone fail. A request that onnxruntime refuses on its own passed every
   * declared check but not the graph's own (e.g. two inputs whose sequence lengths disagree): the caller's input.
   * @returns per request: its outputs, or the AppError it failed with
   */
  async runIsolated(batch: readonly PreparedRequest[]): Promise<(RunResult | AppError)[]> {
    try {
      return (await this.run(batch)).map((result) => this.finite(result))
    } catch (err) {
      if (batch.length === 1) return [this.classify(err)]
      return Promise.all(
        batch.map((r) =>
          this.run([r]).then(
            (out) => (out[0] ? this.finite(out[0]) : this.classify(new Error('no result'))),
            (e: unknown) => this.classify(e),
          ),
        ),
      )
    }
  }

  /**
   * Opens a session with a mix baked in for the generation engine (generate/merged-mixes.ts), which closes it when
   * it drops the mix; close() closes any still open, and one that opens after close() is closed at once.
   */
  private async bakeMix(
    bake: NonNullable<MergedSessions['bake']>,
    mix: Float32Array,
    values: Record<string, Float32Array>,
  ): Promise<BakedSession> {
    const opened = await bake(mix, values)
    const session = opened.session
    if (this.closed) {
      await session.release()
      throw new Error(`model '${this.name}' was closed while a mix was baked`)
    }
    this.baked.add(session)
    return {
      session,
      release: () => {
        this.baked.delete(session)
        return session.release()
      },
    }
  }

  /** Sessions with a mix baked in, open now (bench:load-memory's and the tests' view). */
  get bakedSessions(): number {
    return this.baked.size
  }

  /** Releases every session (and ends their threads); the model serves nothing afterwards. */
  async close(): Promise<void> {
    this.closed = true
    const baked = [...this.baked]
    this.baked.clear()
    const sessions = [
      ...baked,
      this.twin.session,
      ...(this.init.likelihood ? [this.init.likelihood.session] : []),
      ...(this.init.merged
        ? [this.init.merged.decode.session, this.init.merged.merge.session]
        : []),
      ...[...this.variants.values()].map((v) => v.session),
    ]
    const materialized = await this.materialized?.catch(() => undefined)
    await Promise.all([
      ...sessions.map((s) => s.release()),
      materialized?.session.release(),
      materialized?.backend.dispose(),
    ])
  }

  /** The result, or NON_FINITE_OUTPUT when its outputs hold NaN or ±Infinity (finite-outputs.ts). */
  private finite(result: RunResult): RunResult | AppError {
    return nonFiniteOutputError(this.name, result.outputs) ?? result
  }

  private classify(err: unknown): AppError {
    if (err instanceof AppError) return err
    // A session thread that is gone fails every request alike: not the caller's input.
    if (err instanceof SessionThreadStopped)
      return new AppError('INTERNAL', `model '${this.name}': ${err.message}`, { cause: err })
    const detail = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err)
    return new AppError(
      'INVALID_REQUEST',
      `model '${this.name}' cannot run this input: ${detail}`,
      {
        cause: err,
      },
    )
  }

  /** The twin graph's control inputs for a batch; requests without controls get all-zero weights. */
  private controlFeeds(
    batch: readonly { rows: number; controls?: RowControls; rowControls?: RowControls[] }[],
  ): Feeds {
    const rows = batch.flatMap(
      (r) => r.rowControls ?? Array<RowControls>(r.rows).fill(r.controls ?? {}),
    )
    return encodeControls(rows, this.T, this.controls)
  }

  /** The merged tensors for a materialised request (cached per recipe) and the session that takes them. */
  private async materializedWeights(
    r: PreparedRequest,
  ): Promise<{ session: RunnableSession; weights: Map<string, ort.Tensor> }> {
    const recipe = r.recipe
    const merge = this.init.merge
    if (!recipe || !merge) throw new AppError('INTERNAL', 'materialised request without a recipe')
    this.materialized ??= this.openMaterialized()
    const { session, factors, backend } = await this.materialized
    const weights = await this.cache.get(
      recipe.key,
      async () => {
        const merged = await materializeMerge(
          factors,
          recipe.selection.spec,
          recipe.experts,
          merge,
          backend,
          this.init.threaded ? sharedFloats : undefined,
        )
        const tensors = new Map<string, ort.Tensor>()
        for (const f of factors) {
          const values = merged.get(f.name) ?? f.shared
          // Shared memory: each run then hands the thread these weights without copying them here.
          const data = this.init.threaded ? inSharedMemory(values) : values
          tensors.set(f.name, new ort.Tensor('float32', data, shapeOf(f)))
        }
        return tensors
      },
      (m) => [...m.values()].reduce((n, t) => n + (t.data as Float32Array).byteLength, 0),
      r.tenant ?? '',
    )
    return { session, weights }
  }

  private async openMaterialized(): Promise<{
    session: RunnableSession
    factors: FactorsWithShared[]
    backend: MatmulBackend
  }> {
    const rel = this.manifest.model.file
    const bytes = await readFile(join(this.init.dir, rel))
    if (sha256(bytes) !== this.manifest.files[rel])
      throw new AppError(
        'INVALID_MODEL',
        `model '${this.name}': ${rel} changed on disk since it was loaded`,
      )
    const decoded = onnx.ModelProto.decode(bytes)
    if (!decoded.graph) throw new AppError('INVALID_MODEL', `model '${this.name}': no graph`)
    const factors = readExclusiveFactors(decoded.graph, this.manifest)
    const graph = initializersToInputs(
      bytes,
      factors.map((f) => f.name),
    )
    const opts = {
      provider: this.provider,
      ...(this.init.threads ? { threads: this.init.threads } : {}),
    }
    const lowerPriority = this.init.sessionNice ?? 0
    const opened = this.init.threaded
      ? await openThreadedSession(graph, { ...opts, transfer: true, lowerPriority })
      : await openSession(graph, opts)
    // Rebuilding each expert's delta is a product per tensor: on onnxruntime, on this model's provider.
    const backend = new MatmulBackend({
      provider: this.provider,
      ...(this.init.threads ? { threads: this.init.threads } : {}),
      ...(this.init.threaded ? { threaded: true } : {}),
      ...(lowerPriority ? { lowerPriority } : {}),
    })
    return { session: opened.session, factors, backend }
  }
}
