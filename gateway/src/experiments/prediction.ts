/**
 * The prediction a response made, per row, for label feedback: the argmax over the last dimension of the
 * prediction output (scores or logits), or the values themselves when the output is already labels (BYTES,
 * integers, one value per row).
 * @module
 */
import { flattenTensorData, InferenceResponseSchema } from '@twinserve/shared'

/** Rows beyond this are not recorded (label feedback then covers the first MAX_PREDICTION_ROWS). */
export const MAX_PREDICTION_ROWS = 1024

/** Per-row predicted labels as strings, or undefined when the response has no usable prediction output. */
export function extractPrediction(
  responseText: string,
  outputName: string | null,
): string[] | undefined {
  let json: unknown
  try {
    json = JSON.parse(responseText)
  } catch {
    return undefined
  }
  const parsed = InferenceResponseSchema.safeParse(json)
  if (!parsed.success) return undefined
  const outputs = parsed.data.outputs
  const out = outputName === null ? outputs[0] : outputs.find((o) => o.name === outputName)
  // A binary output (raw bytes after the JSON header) carries no `data`: no prediction is recorded for it.
  if (!out?.data) return undefined
  const data = flattenTensorData(out.data)
  const shape = out.shape
  const labelsDirect =
    out.datatype === 'BYTES' ||
    out.datatype === 'BOOL' ||
    (out.datatype.includes('INT') && (shape.length <= 1 || shape.at(-1) === 1))
  if (labelsDirect) return data.slice(0, MAX_PREDICTION_ROWS).map((v) => String(v))
  // Scores: [rows, classes] (or [classes] for one row); argmax per row.
  const classes = shape.length === 0 ? 1 : (shape.at(-1) ?? 1)
  if (classes < 1 || data.length % classes !== 0) return undefined
  const rows = Math.min(MAX_PREDICTION_ROWS, data.length / classes)
  const labels: string[] = []
  for (let r = 0; r < rows; r++) {
    let best = 0
    let bestValue = Number.NEGATIVE_INFINITY
    for (let k = 0; k < classes; k++) {
      const v = Number(data[r * classes + k])
      if (v > bestValue) {
        bestValue = v
        best = k
      }
    }
    labels.push(String(best))
  }
  return labels
}
