/**
 * A decoder package's graph as the runner opens it for generation (issue 14, speed): its identical initializers
 * shared (onnx/dedupe-initializers.ts: repeated per-site tables made onnxruntime repeat the same Gather 22 times
 * a pass) and its new keys and values exposed as outputs (new-kv-outputs.ts: fetching the whole `present` cost a
 * fresh 8 MB per step at batch 32). Both leave every output's values as they were.
 * @module
 */
import { dedupeInitializers } from '../onnx/dedupe-initializers.ts'
import { onnx } from '../onnx/proto.ts'
import { addNewKvOutputs } from './new-kv-outputs.ts'

/** The graph's bytes rewritten for serving, or the same bytes when neither rewrite applies. */
export function decoderAsServed(model: Uint8Array): Uint8Array {
  const decoded = onnx.ModelProto.decode(model)
  if (!decoded.graph) return model
  const changed = dedupeInitializers(decoded.graph) + addNewKvOutputs(decoded.graph)
  return changed > 0 ? onnx.ModelProto.encode(decoded).finish() : model
}

/** A decoder with past key/values as inputs (the Hugging Face layout): the runner serves it rewritten. */
export function isKvDecoder(manifest: { inputs: readonly { name: string }[] }): boolean {
  return manifest.inputs.some((i) => i.name === 'past_key_values.0.key')
}
