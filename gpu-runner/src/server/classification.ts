/**
 * Triton's classification extension: a requested output with `parameters.classification: k` is answered as the
 * top k classes of each row instead of the scores, as BYTES strings `"score:index"`, or `"score:index:label"`
 * where the model knows its labels. Scores print with six decimals, as Triton's (std::to_string) do; tritonclient
 * parses nothing out of them, so the format is what users' code splits on.
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_classification.md
 * @module
 */
import { AppError, type ResponseOutput, type TensorMetadata } from '@twinserve/shared'

/** Refuses classification on an output without a class axis, before any work is queued. */
export function checkClassifiable(output: TensorMetadata, k: number): void {
  if (output.shape.length < 2 || output.datatype === 'BYTES' || output.datatype === 'BOOL')
    throw new AppError(
      'INVALID_REQUEST',
      `outputs '${output.name}': classification: ${k} needs a numeric output of shape [batch, classes], and '${output.name}' is ${output.datatype} [${output.shape.join(', ')}]`,
    )
}

/**
 * The top `k` classes of each row of a [rows, classes] output, best first (ties: lower index first).
 * @param labels per row, the label names of that row's task (index i names class i), when known
 */
export function classify(
  output: ResponseOutput,
  k: number,
  labels?: readonly (readonly string[] | undefined)[],
): ResponseOutput {
  const [rows = 0, ...rest] = output.shape
  const classes = rest.reduce((a, b) => a * b, 1)
  const data = output.data ?? []
  const top = Math.min(k, classes)
  const out: string[] = []
  for (let r = 0; r < rows; r++) {
    const scores = data.slice(r * classes, (r + 1) * classes).map(Number)
    const order = scores
      .map((_, i) => i)
      .sort((a, b) => (scores[b] as number) - (scores[a] as number) || a - b)
    const names = labels?.[r]
    for (const i of order.slice(0, top)) {
      const label = names?.[i]
      out.push(`${(scores[i] as number).toFixed(6)}:${i}${label !== undefined ? `:${label}` : ''}`)
    }
  }
  const { parameters, ...base } = output
  return {
    ...base,
    ...(parameters ? { parameters } : {}),
    datatype: 'BYTES',
    shape: [rows, top],
    data: out,
  }
}
