/**
 * The runner never answers non-finite numbers silently (issue #16, case 1). JSON has no NaN or ±Infinity:
 * `JSON.stringify` wrote them as `null`, the gateway took the answer for a broken runner, and three such requests
 * from one tenant opened the breaker for everyone. Values within each datatype's range can still overflow inside
 * the model (pixels of 3e38 through a float32 layer), so outputs are checked too.
 *
 * Decision: such a request fails with 422 NON_FINITE_OUTPUT naming its rows and outputs, rather than answering
 * `NaN` as a string or `null`: the Open Inference Protocol's JSON tensor data has no representation for them,
 * and a client that gets a number where it expects one would compute on garbage. Other requests of the same
 * batch are unaffected (each request is checked on its own rows).
 * @module
 */
import { AppError, type ResponseOutput } from '@twinserve/shared'

/** Rows named per output, at most this many. */
const MAX_NAMED_ROWS = 8

/** The rows (counted from 0 within the request) of `output` that hold NaN or ±Infinity. */
function nonFiniteRows(output: ResponseOutput): number[] {
  const rows = output.shape[0] ?? 1
  const data = output.data ?? []
  const perRow = rows > 0 ? data.length / rows : data.length
  const bad: number[] = []
  data.forEach((v, i) => {
    if (typeof v !== 'number' || Number.isFinite(v)) return
    const row = perRow > 0 ? Math.floor(i / perRow) : 0
    if (bad.at(-1) !== row) bad.push(row)
  })
  return bad
}

/** NON_FINITE_OUTPUT naming where `outputs` hold NaN or ±Infinity, or undefined when every value is finite. */
export function nonFiniteOutputError(
  model: string,
  outputs: readonly ResponseOutput[],
): AppError | undefined {
  const parts: string[] = []
  for (const o of outputs) {
    const rows = nonFiniteRows(o)
    if (rows.length === 0) continue
    const named = rows.slice(0, MAX_NAMED_ROWS).join(', ')
    const more = rows.length > MAX_NAMED_ROWS ? ` and ${rows.length - MAX_NAMED_ROWS} more` : ''
    parts.push(`output '${o.name}' row${rows.length > 1 ? 's' : ''} ${named}${more}`)
  }
  if (parts.length === 0) return undefined
  return new AppError(
    'NON_FINITE_OUTPUT',
    `model '${model}' computed NaN or ±Infinity for ${parts.join('; ')} (rows count from 0): the input drives the model outside float32's range`,
  )
}
