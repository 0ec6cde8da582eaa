/**
 * Step 2 of the rewrite: the [batch, T] expert weights each row applies. In the twin contract (controls
 * 'inputs') the control inputs are declared, the router runs behind its gate (router/router-gate.ts), router rows
 * abstain when the router is less sure than `abstain_below` (weights 0), are masked, cut to their top_k and
 * renormalised, explicit rows pass `mix_weights` through, and the applied weights are a graph output. A variant graph (controls 'router') applies the router's dense weights.
 * @module
 */
import { TWIN_INPUTS, TWIN_OUTPUT_WEIGHTS, type TwinInputSpec } from '@twinserve/shared'
import { type Dim, valueInfo } from '../../onnx/graph-builder.ts'
import { gateRouter } from '../router/router-gate.ts'
import type { RewriteContext } from './rewrite-context.ts'
import { emitTopK } from './topk-gather.ts'

export interface ExpertWeights {
  /** [batch, T] the weights each row applies. */
  applied: string
  /** Top-k gather: each row's applied experts [batch, K] (int64)… */
  picked?: string
  /** …and their weights [batch, K]. */
  pickedWeights?: string
}

const { mixWeights, useRouter, expertMask, topK, abstainBelow } = TWIN_INPUTS

/** Declares the twin graph's control inputs, every one of the spec (TWIN_INPUTS) in its order. */
function declareControls(ctx: RewriteContext): void {
  const { editor, experts: T } = ctx
  const dim = (d: TwinInputSpec['dims'][number]): Dim =>
    d === 'batch' ? ctx.options.batchDim : d === 'T' ? T : d
  const graph = editor.graph
  const specs: readonly TwinInputSpec[] = Object.values(TWIN_INPUTS)
  graph.input = [
    ...(graph.input ?? []),
    ...specs.map((spec) =>
      valueInfo(
        editor.claim(spec.name),
        spec.dtype === 'int64' ? 'int64' : 'float',
        spec.dims.map(dim),
      ),
    ),
  ]
}

/**
 * The router's weights for router rows: masked, each row's top_k kept (the k-th largest value is the threshold;
 * ties at the threshold are all kept), renormalised. k is clamped to [1, K] (K = T, or top-k gather's K).
 */
function routedWeights(ctx: RewriteContext, probs: string): string {
  const { editor, ops, experts: T } = ctx
  const masked = editor.node('Mul', [probs, expertMask.name], { hint: 'weights/masked' })
  const one = editor.int64('weights/one', [1], [])
  const kMax = editor.int64('weights/t', [ctx.gatherK ?? T], [])
  const k = ops.clampInt64(topK.name, one, kMax, 'weights/k')
  const kIndex = editor.node('Sub', [k, one], { hint: 'weights/k_index' }) // [batch, 1]
  const sorted = ops.topK(masked, T, 'weights/topk', {
    k: 'weights/all',
    values: 'weights/sorted',
    indices: 'weights/sorted_idx',
  }).values
  const kth = ops.gatherElements(sorted, kIndex, 'weights/kth')
  const keep = ops.greaterOrEqual(masked, kth, 'weights/keep')
  const kept = editor.node('Where', [keep, masked, ops.scalar(0, 'weights/zero')], {
    hint: 'weights/kept',
  })
  const sum = ops.reduceSum(kept, [1], true, 'weights/sum')
  // A row whose experts are all masked gets weights 0, i.e. the shared model, instead of NaN.
  const den = editor.node('Max', [sum, ops.scalar(1e-12, 'weights/eps')], { hint: 'weights/den' })
  return editor.node('Div', [kept, den], { hint: 'weights/routed' })
}

/**
 * Router rows less sure than `abstain_below` get probabilities 0, so mask, top_k and renormalisation leave them
 * at weights 0 (the shared model). The router's confidence is its largest probability over the experts the row
 * allows (renormalised), taken before top_k: after top_k's renormalisation a top-1 row would always be sure.
 * Emitted right after the router, so that it runs inside the router gate: batches without router rows skip it.
 */
function abstain(ctx: RewriteContext, probs: string): string {
  const { editor, ops } = ctx
  const allowed = editor.node('Mul', [probs, expertMask.name], { hint: 'router/allowed' })
  const total = ops.reduceSum(allowed, [1], true, 'router/allowed_sum')
  const den = editor.node('Max', [total, ops.scalar(1e-12, 'router/allowed_eps')], {
    hint: 'router/allowed_den',
  })
  const largest = ops.reduceMax(allowed, [1], true, 'router/largest')
  const confidence = editor.node('Div', [largest, den], { hint: 'router/confidence' }) // [batch, 1]
  const unsure = editor.node('Less', [confidence, abstainBelow.name], { hint: 'router/unsure' })
  return editor.node('Where', [unsure, ops.scalar(0, 'router/abstained'), probs], {
    hint: 'router/probs_or_abstain',
  })
}

/**
 * Emits the weights each row applies, from the router's probabilities.
 * @param router step 1's output: the probabilities and the first node that computes only the router
 */
export function emitExpertWeights(
  ctx: RewriteContext,
  router: { probs: string; firstNode: number },
): ExpertWeights {
  if (ctx.options.controls === 'router') return { applied: router.probs }
  const { editor, ops, experts: T } = ctx
  const b = ctx.options.batchDim
  declareControls(ctx)
  const probs = gateRouter(editor, ops, {
    from: router.firstNode,
    probs: abstain(ctx, router.probs),
    dims: [b, T],
    useRouter: useRouter.name,
    passThrough: mixWeights.name,
  })
  const routed = routedWeights(ctx, probs)
  const routerRow = editor.node('Greater', [useRouter.name, ops.scalar(0.5, 'weights/half')], {
    hint: 'weights/use_router',
  })
  let applied = editor.node('Where', [routerRow, routed, mixWeights.name], {
    hint: 'weights/w',
  })
  let top: ReturnType<typeof emitTopK> | undefined
  if (ctx.gatherK !== undefined) {
    top = emitTopK(editor, ops, applied, ctx.gatherK)
    applied = top.applied
  }
  editor.node('Identity', [applied], { outputs: [editor.claim(TWIN_OUTPUT_WEIGHTS)] })
  editor.graph.output = [
    ...(editor.graph.output ?? []),
    valueInfo(TWIN_OUTPUT_WEIGHTS, 'float', [b, T]),
  ]
  return top === undefined ? { applied } : { applied, picked: top.idx, pickedWeights: top.picked }
}
