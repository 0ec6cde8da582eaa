/**
 * Loads a twin package into onnxruntime sessions: the twin graph and every variant, opened once at start (never
 * per request), on the provider resolved for the first session (so a CPU-only host tries CUDA once, not once per
 * graph). The exclusive-knowledge factors are checked here too, so that a package the materialised path cannot
 * use is known at start; such a package still serves its factored and static paths. A decoder's twin session runs
 * its decode graph (generate/decode-graph.ts); the likelihood graphs are derived from the graph as served.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { bakedMixGraph } from '../generate/baked-mix-graph.ts'
import { decodeGraph } from '../generate/decode-graph.ts'
import { decoderAsServed, isKvDecoder } from '../generate/decoder-as-served.ts'
import { groupedLikelihoodGraph } from '../generate/grouped-likelihood-graph.ts'
import { likelihoodGraph } from '../generate/likelihood-graph.ts'
import { mergedDecodeGraph } from '../generate/merged-decode-graph.ts'
import { BAKED_MIXES } from '../generate/merged-mixes.ts'
import { onnx } from '../onnx/proto.ts'
import { externalGraphPath, loadPackage } from '../package/load-package.ts'
import { openSession, type ProviderChoice } from '../runtime/ort-session.ts'
import { openThreadedSession } from '../runtime/threaded-session.ts'
import { TextTokenizer } from '../text/text-tokenizer.ts'
import { type MergeTensorFn, readExclusiveFactors } from './materialize.ts'
import { type MergedSessions, ServedModel, type ServingSession } from './served-model.ts'

export interface LoadModelOptions {
  provider: ProviderChoice
  threads?: number
  /** The merge engine's `mergeTensor`; without it `merge_method` requests are refused. */
  merge?: MergeTensorFn
  /**
   * Run each session in a thread of its own (default true; threaded-session.ts), so that the event loop keeps
   * reading requests and answering health checks while a batch runs. `false` runs them on the event loop
   * (benchmarks compare the two).
   */
  sessionThreads?: boolean
  /**
   * Nice steps the session threads (and onnxruntime's intra-op threads) run below the event loop's thread
   * (threaded-session.ts, `lowerPriority`); default 0. Ignored with sessions on the event loop.
   */
  sessionNice?: number
  /**
   * Whether to open the likelihood graph of a package that routes by its prompt's likelihood (default: yes). Only
   * the generation engine scores prompts with it, so the runner opens it for the models it generates with
   * (`--generation`) and saves the second session (~40 MiB for zoo/lm) everywhere else.
   */
  likelihoodSession?: (modelName: string) => boolean
  /**
   * Whether to open a decoder's merged decode graph and merge graph (generate/merged-decode-graph.ts; default:
   * yes): two more sessions, which only the generation engine runs, so the runner opens them for the models it
   * generates with.
   */
  mergedSessions?: (modelName: string) => boolean
  mergeCache: {
    maxEntries: number
    maxBytes: number
    maxEntriesPerOwner?: number
    onLookup?: (hit: boolean) => void
  }
}

export async function loadModel(dir: string, opts: LoadModelOptions): Promise<ServedModel> {
  const pkg = await loadPackage(dir)
  const { manifest } = pkg
  // Read before any session opens: a package whose tokenizer the library cannot read fails fast.
  const t = manifest.tokenizer
  if (t) {
    const names = manifest.inputs.map((i) => i.name).sort()
    if (names.join() !== [t.idsInput, t.maskInput].sort().join())
      throw new AppError(
        'INVALID_MODEL',
        `model '${manifest.name}': its tokenizer feeds ${t.idsInput} and ${t.maskInput}, but the model's inputs are ${names.join(', ')}`,
      )
  }
  const text =
    manifest.tokenizer && pkg.tokenizer
      ? TextTokenizer.fromJson(
          pkg.tokenizer.json,
          pkg.tokenizer.config,
          manifest.tokenizer,
          `model '${manifest.name}' ${manifest.tokenizer.file}`,
        )
      : undefined
  const sessionOpts = (provider: ProviderChoice) => ({
    provider,
    ...(opts.threads ? { threads: opts.threads } : {}),
  })
  const threaded = opts.sessionThreads ?? true
  const lowerPriority = threaded ? (opts.sessionNice ?? 0) : 0
  const open = (model: string | Uint8Array, o: ReturnType<typeof sessionOpts>) =>
    threaded ? openThreadedSession(model, { ...o, lowerPriority }) : openSession(model, o)
  let twin: ServingSession
  const external = externalGraphPath(pkg, manifest.model.file)
  const served = external ? undefined : servedBytes(pkg.model, manifest)
  // The decode session takes the decode graph; the likelihood graphs below are derived from `served`.
  const decode = served === undefined || served === pkg.model ? undefined : decodeGraph(served)
  let decodeGraphNote =
    decode && 'unavailable' in decode ? `not rewritten: ${decode.unavailable}` : undefined
  try {
    if (decode && 'bytes' in decode)
      try {
        twin = await open(decode.bytes, sessionOpts(opts.provider))
        decodeGraphNote = `σ folded in ${decode.foldedScales} corrections, ${decode.joinedVectors} vector deltas in one product carrying ${decode.foldedBases} shared biases and LayerNorms`
      } catch (err) {
        // The graph as served, which onnxruntime loaded before this rewrite existed; the log says why.
        decodeGraphNote = `not rewritten: onnxruntime cannot load it: ${err instanceof Error ? err.message : String(err)}`
        twin = await open(served ?? pkg.model, sessionOpts(opts.provider))
      }
    else twin = await open(external ?? served ?? pkg.model, sessionOpts(opts.provider))
  } catch (err) {
    throw new AppError(
      'INVALID_MODEL',
      `model '${manifest.name}': onnxruntime cannot load ${manifest.model.file}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    )
  }
  const variants = new Map<string, ServingSession>()
  for (const [name, bytes] of pkg.variants) {
    const file = manifest.variants.find((v) => v.name === name)?.file ?? ''
    try {
      variants.set(
        name,
        await open(externalGraphPath(pkg, file) ?? bytes, sessionOpts(twin.provider)),
      )
    } catch (err) {
      throw new AppError(
        'INVALID_MODEL',
        `model '${manifest.name}': onnxruntime cannot load variant '${name}': ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      )
    }
  }

  const like = manifest.router.promptLikelihood
  const likelihood = !like
    ? {}
    : (opts.likelihoodSession?.(manifest.name) ?? true)
      ? await openLikelihood(
          served,
          external,
          // The grouped graph takes one-hot rows only: a pass with the router's row cannot use it.
          (like.routerWeight ?? 0) !== 0
            ? "the router's row rides in the scoring pass (router_weight ≠ 0)"
            : manifest.experts.length,
          (bytes) => open(bytes, sessionOpts(twin.provider)),
        )
      : { likelihoodUnavailable: 'not opened: this runner does not generate with the model' }

  const merged =
    served === undefined || served === pkg.model
      ? {}
      : (opts.mergedSessions?.(manifest.name) ?? true)
        ? await openMerged(served, manifest.experts.length, (bytes) =>
            open(bytes, sessionOpts(twin.provider)),
          )
        : { mergedDecodeNote: 'not opened: this runner does not generate with the model' }

  let materializedUnavailable: string | undefined
  if (!opts.merge) materializedUnavailable = 'the merge engine is not available in this runner'
  else
    try {
      // Decoded only to check; the factors are read again (and kept) on the first materialised request.
      const graph = onnx.ModelProto.decode(pkg.model).graph
      readExclusiveFactors(graph ?? {}, manifest)
    } catch (err) {
      materializedUnavailable = err instanceof Error ? err.message : String(err)
    }

  return new ServedModel({
    dir,
    manifest,
    twin,
    variants,
    threaded,
    ...(lowerPriority ? { sessionNice: lowerPriority } : {}),
    ...(text ? { text } : {}),
    ...likelihood,
    ...merged,
    ...(decodeGraphNote ? { decodeGraph: decodeGraphNote } : {}),
    ...(opts.threads ? { threads: opts.threads } : {}),
    ...(materializedUnavailable ? { materializedUnavailable } : {}),
    ...(opts.merge ? { merge: opts.merge } : {}),
    mergeCache: opts.mergeCache,
  })
}

/**
 * The twin graph as the runner opens it: a decoder with a KV cache is rewritten for generation (shared identical
 * initializers, its new keys and values as extra outputs: generate/decoder-as-served.ts); any other graph as is.
 */
function servedBytes(
  model: Uint8Array,
  manifest: { inputs: readonly { name: string }[] },
): Uint8Array {
  if (!isKvDecoder(manifest)) return model
  return decoderAsServed(model)
}

/**
 * A decoder's merged decode graph and merge graph (generate/merged-decode-graph.ts): the engine runs a decode pass
 * whose rows share one mix on the first, with that mix's matrices from the second. Or why not: the engine then
 * decodes factored only, as before. The merge session holds each expert's whole correction, T·d_in·d_out floats a
 * matrix (`mergeBytes`; 18.9 MiB for zoo/lm), which estimateLoadedBytes counts.
 */
async function openMerged(
  served: Uint8Array,
  experts: number,
  open: (bytes: Uint8Array) => Promise<ServingSession>,
): Promise<{ merged?: MergedSessions; mergedDecodeNote: string }> {
  const rewritten = mergedDecodeGraph(served, experts)
  if ('unavailable' in rewritten) return { mergedDecodeNote: `none: ${rewritten.unavailable}` }
  let decode: ServingSession | undefined
  try {
    decode = await open(rewritten.decode)
    const merge = await open(rewritten.merge)
    const { matrices, bytesPerMix, mergeBytes, sites, factored } = rewritten
    // A hot mix's own session (generate/baked-mix-graph.ts), opened by the engine in the background.
    const bake = (mix: Float32Array, values: Record<string, Float32Array>) =>
      open(bakedMixGraph(rewritten.decode, values, mix))
    return {
      merged: { decode, merge, matrices, bytesPerMix, mergeBytes, bake },
      mergedDecodeNote: `${sites} corrections merged into ${matrices.length} matrices${factored ? `, ${factored} left factored` : ''}; ${(bytesPerMix / 2 ** 20).toFixed(1)} MiB a mix; up to ${BAKED_MIXES} hot mix baked into a session of its own`,
    }
  } catch (err) {
    await decode?.session.release()
    return {
      mergedDecodeNote: `none: onnxruntime cannot load it: ${err instanceof Error ? err.message : String(err)}`,
    }
  }
}

/**
 * The likelihood graph's session (generate/likelihood-graph.ts) for a package that routes by the prompt's
 * likelihood, so that scoring a prompt returns its tokens' log-probabilities instead of the logits; or why not,
 * and the engine then scores from the twin graph's logits as before. Where it can, the session is the grouped
 * likelihood graph (generate/grouped-likelihood-graph.ts: each one-hot row multiplies only its own expert's ranks,
 * 0.6× the scoring pass's CPU on zoo/lm); `grouping` is T, or why the pass cannot be grouped. It is a second
 * session of the same weights (their bytes again in memory, and a thread of its own): `npm run bench:load-memory`
 * measured a zoo/lm/package load growing by 36–52 MiB with the grouped graph against 20–22 MiB without it (the
 * ungrouped graph: 73–104 MiB); estimateLoadedBytes counts it. Only the generation
 * engine scores prompts with it, so the runner opens it for the models it generates with (`likelihoodSession`).
 */
async function openLikelihood(
  served: Uint8Array | undefined,
  external: string | undefined,
  grouping: number | string,
  open: (bytes: Uint8Array) => Promise<ServingSession>,
): Promise<{
  likelihood?: ServingSession
  likelihoodUnavailable?: string
  likelihoodGrouped?: number
  likelihoodUngrouped?: string
}> {
  if (external) return { likelihoodUnavailable: 'the graph keeps its weights in an external file' }
  if (!served) return { likelihoodUnavailable: 'the package has no graph bytes' }
  const derived = likelihoodGraph(served)
  if ('unavailable' in derived) return { likelihoodUnavailable: derived.unavailable }
  const grouped =
    typeof grouping === 'number'
      ? groupedLikelihoodGraph(derived.bytes, grouping)
      : { unavailable: grouping }
  let ungrouped = 'unavailable' in grouped ? grouped.unavailable : ''
  if ('bytes' in grouped)
    try {
      return { likelihood: await open(grouped.bytes), likelihoodGrouped: grouped.grouped }
    } catch (err) {
      // Then the ungrouped graph, which onnxruntime loaded before this rewrite existed; the log says why.
      ungrouped = `onnxruntime cannot load the grouped graph: ${err instanceof Error ? err.message : String(err)}`
    }
  try {
    return { likelihood: await open(derived.bytes), likelihoodUngrouped: ungrouped }
  } catch (err) {
    return {
      likelihoodUnavailable: `onnxruntime cannot load the likelihood graph: ${err instanceof Error ? err.message : String(err)}`,
    }
  }
}
