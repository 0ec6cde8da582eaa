/**
 * The options of the twin-graph rewrite and the context its steps share: the graph being edited, the emitters,
 * the shared model's nodes as they were, and which node receives each exclusive tensor's correction.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { MatrixFactors, VectorFactors } from '../../factors/exclusive-factors.ts'
import type { Dim } from '../../onnx/graph-builder.ts'
import type { IModelProto, INodeProto, ModelProto } from '../../onnx/proto.ts'
import { GraphEditor } from '../graph/graph-editor.ts'
import { defaultOpset, Ops } from '../graph/ops.ts'
import type { TensorLayout } from '../graph/row-layout.ts'
import type { TensorSite } from '../graph/weight-sites.ts'
import { correctionTargets } from './correction-targets.ts'

/**
 * Emits a router: from a [batch, d] feature tensor to a [batch, T] tensor of probabilities. `tokens`: the graph
 * inputs of the ids and the mask, for a router that also reads the bag of tokens.
 */
export type RouterEmitter = (
  editor: GraphEditor,
  ops: Ops,
  feature: string,
  tokens?: { ids: string; mask: string },
) => string

export interface TwinRewriteOptions {
  /** The shared model: the base graph with θ_s in its initializers. Not mutated. */
  model: IModelProto
  sites: ReadonlyMap<string, TensorSite>
  matrices: readonly MatrixFactors[]
  vectors: readonly VectorFactors[]
  /** Number of experts T. */
  experts: number
  /**
   * Where the batch is in each tensor (pipeline/row-layouts.ts): the rewrite reads the outputs of the nodes that get
   * corrections and the router feature. A lookup may throw, naming a tensor whose batch axis cannot be tracked.
   */
  layouts: { get(tensor: string): TensorLayout | undefined }
  /** Router input: a tensor of the base graph, mean-pooled per row over every axis but the batch and the last. */
  feature: { tensor: string; layout: TensorLayout }
  /** Further tensors the router reads, pooled alike and concatenated after `feature`. */
  extraFeatures?: { tensor: string; layout: TensorLayout }[]
  /**
   * Pool [batch, seq, d] features over the real tokens only: the graph input holding the attention mask
   * ([batch, seq], 1 = real). Default: the plain mean.
   */
  poolingMask?: string
  /** The graph inputs of the ids and the mask, for a router that reads the bag of tokens. */
  bag?: { ids: string; mask: string }
  /** A graph input whose axis 0 is the batch (the router reads the batch size from it for flattened features). */
  batchInput: string
  router: RouterEmitter
  /**
   * 'inputs': the twin contract (the control inputs of TWIN_INPUTS in, expert_weights out).
   * 'router': a plain graph for a variant, the router's dense weights applied, the base inputs/outputs only.
   */
  controls: 'inputs' | 'router'
  batchDim: Dim
  /**
   * Storage type of the U and Vᵀ factors. `float16` halves their bytes: they are stored as FLOAT16 initializers
   * under the convention names and Cast to float32 in the graph (onnxruntime folds the Cast of a constant when
   * it creates the session, so serving computes in float32 as before). `int8` quarters them: symmetric per-rank
   * scales folded into σ, the same Cast (factors/int8-factors.ts). Default float32.
   */
  factorDtype?: 'float32' | 'float16' | 'int8'
  /**
   * Top-k gather (controls 'inputs' only): each row applies at most this many experts, those with the largest
   * |weight| (router rows: top_k is capped at it before renormalising), and each matrix gathers just their
   * factors per row: the FLOPs of rank k·r instead of T·r. Factors are stored expert-major, padded to the
   * tensor's largest per-expert rank with zero singular values (R = T·r). Default: dense, every expert applied.
   */
  topkGather?: number
}

export interface RewriteContext {
  readonly options: TwinRewriteOptions
  /** The copy of the shared model being rewritten. */
  readonly model: ModelProto
  readonly editor: GraphEditor
  readonly ops: Ops
  /** Number of experts T. */
  readonly experts: number
  /** The shared model's nodes in their original order (the same objects: renaming outputs edits the graph). */
  readonly original: readonly INodeProto[]
  /** Per exclusive tensor, per use: the index in `original` of the node whose output receives the correction. */
  readonly targets: ReadonlyMap<string, readonly number[]>
  /** Every node that receives a correction. */
  readonly corrected: ReadonlySet<number>
  /** Top-k gather's K, when the graph gathers (controls 'inputs' only). */
  readonly gatherK: number | undefined
}

function checkSite(
  sites: ReadonlyMap<string, TensorSite>,
  name: string,
  kind: 'matrix' | 'vector',
): void {
  const site = sites.get(name)
  if (!site)
    throw new AppError('INVALID_MODEL', `tensor '${name}' is not an initializer of the base graph`)
  if (site.kind !== kind)
    throw new AppError('INVALID_MODEL', `tensor '${name}' is not a ${kind} site`)
}

/** Checks the options against the model and sets up the editor on `model` (a copy the rewrite may change). */
export function rewriteContext(model: ModelProto, options: TwinRewriteOptions): RewriteContext {
  const graph = model.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'the shared model has no graph')
  const editor = new GraphEditor(graph)
  const ops = new Ops(editor, defaultOpset(model))
  const experts = options.experts
  for (const m of options.matrices) checkSite(options.sites, m.name, 'matrix')
  for (const v of options.vectors) checkSite(options.sites, v.name, 'vector')
  const targets = correctionTargets(
    options.model,
    options.sites,
    [...options.matrices, ...options.vectors],
    options.layouts,
  )
  const gatherK = options.controls === 'inputs' ? options.topkGather : undefined
  if (gatherK !== undefined && (!Number.isInteger(gatherK) || gatherK < 1 || gatherK >= experts))
    throw new AppError(
      'INVALID_REQUEST',
      `exclusive.topk_gather must be a whole number below the number of experts (${experts}), got ${gatherK}`,
    )
  return {
    options,
    model,
    editor,
    ops,
    experts,
    original: [...(graph.node ?? [])],
    targets,
    corrected: new Set([...targets.values()].flat()),
    gatherK,
  }
}
