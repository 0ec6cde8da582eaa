/**
 * Exports trained MLP weights as a servable ONNX model: weights as initializers, one dynamic batch dimension,
 * user-facing input/output names and metadata_props. Every export of the same layer sizes has the same graph
 * (node names, initializer names, shapes, op order): only the initializer bytes and the metadata differ, which
 * is what weight-space merging of a base and its experts requires.
 * @module
 */
import { checkWeights, layerParamNames, type MlpWeights } from './mlp.ts'
import { buildInferenceGraph } from './mlp-graphs.ts'

export interface ExportMlpOptions {
  /** Default 'input'. */
  inputName?: string
  /** Default 'logits'. */
  outputName?: string
  /** Graph name; default 'mlp'. Keep it equal across a base and its experts. */
  graphName?: string
  /** ONNX metadata_props, written in sorted key order so identical inputs give identical bytes. */
  metadata?: Record<string, string>
}

/**
 * @example
 * const bytes = exportMlpOnnx(weights, { inputName: 'pixels', outputName: 'logits', metadata: { task: 'original' } })
 */
export function exportMlpOnnx(weights: MlpWeights, opts: ExportMlpOptions = {}): Uint8Array {
  checkWeights(weights)
  const params = weights.layers.flatMap((l, i) => {
    const p = layerParamNames(i)
    const nIn = weights.sizes[i] as number
    const nOut = weights.sizes[i + 1] as number
    return [
      { name: p.weight, data: l.weight, dims: [nIn, nOut] },
      { name: p.bias, data: l.bias, dims: [nOut] },
    ]
  })
  const g = buildInferenceGraph(weights.sizes, params, {
    inputName: opts.inputName ?? 'input',
    outputName: opts.outputName ?? 'logits',
    graphName: opts.graphName ?? 'mlp',
  })
  const metadata = Object.fromEntries(
    Object.entries(opts.metadata ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  )
  return g.build({ metadata, producer: 'twinserve' })
}
