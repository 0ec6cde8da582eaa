/**
 * The twin-graph rewrite: turns the shared model (base graph, shared values in its initializers) into one graph
 * that routes, merges and infers per example, in six steps over a shared context (rewrite-context.ts):
 * 1. router feature (router-feature.ts): the router on the shared model's value of the feature tensor;
 * 2. expert weights (expert-weights.ts): the control inputs, the router behind its gate (router/router-gate.ts:
 *    explicit mixes, `shared` rows and the materialised path do not pay for a router pass), mask, top_k,
 *    renormalisation, and the applied weights as an output;
 * 3. rename (corrections.ts): every node that gets a correction computes the shared value under a new name;
 * 4. matrix corrections (matrix-corrections.ts, or topk-gather.ts with `topkGather: k`, which also carries the
 *    corrections of the biases right after them: folded-biases.ts);
 * 5. vector corrections (vector-corrections.ts);
 * 6. sum (corrections.ts): the corrections are added back under each node's original output name.
 * Every term is added after the untouched shared node, so all-zero weights give the shared model bit for bit.
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { type IModelProto, type ModelProto, onnx } from '../../onnx/proto.ts'
import { Corrections } from './corrections.ts'
import { emitExpertWeights } from './expert-weights.ts'
import { foldedBiases } from './folded-biases.ts'
import { emitMatrixCorrections } from './matrix-corrections.ts'
import { rewriteContext, type TwinRewriteOptions } from './rewrite-context.ts'
import { emitRouter } from './router-feature.ts'
import { emitVectorCorrections } from './vector-corrections.ts'

function cloneModel(model: IModelProto): ModelProto {
  return onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
}

export function rewriteTwinGraph(options: TwinRewriteOptions): ModelProto {
  const model = cloneModel(options.model)
  const ctx = rewriteContext(model, options)
  const router = emitRouter(ctx) // 1
  const weights = emitExpertWeights(ctx, router) // 2
  const corrections = new Corrections(ctx) // 3
  const folded = foldedBiases(ctx) // top-k gather: bias terms carried by matrix corrections
  emitMatrixCorrections(ctx, weights, corrections, folded) // 4
  emitVectorCorrections(ctx, weights.applied, corrections, folded) // 5
  corrections.sumIntoOutputs() // 6
  ctx.editor.sortTopologically()
  return model
}
