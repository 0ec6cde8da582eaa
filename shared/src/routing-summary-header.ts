/**
 * The runner's per-request routing summary (issue #19), sent to the gateway in a response header so that the
 * gateway can count per-expert routing without the caller asking for `expert_weights` and without reading the
 * body: `<rows>,<abstained>,<entropy sum>;<expert>:<routed rows>:<weight sum>;…`, e.g.
 * `4,1,0.8123;original:2:1.7500;digits:1:0.9000`. Only rows the router weighed are summarised (explicit mixes,
 * variants and fan-outs send no header). A string split, no schema: it is on the gateway's hot path.
 * @module
 */

export const ROUTING_SUMMARY_HEADER = 'x-twinserve-routing'

export interface RoutingSummaryHeader {
  /** Rows the router weighed, abstained ones included. */
  rows: number
  /** Rows whose weights were all 0 (the shared model answered). */
  abstained: number
  /** Sum over the non-abstained rows of their weights' entropy (nats). */
  entropySum: number
  /** Per expert: rows with weight > 0.1, and the sum of its weight over the rows. */
  experts: { name: string; routedRows: number; weightSum: number }[]
}

/** @example formatRoutingSummary({ rows: 1, abstained: 0, entropySum: 0, experts: [{ name: 'a', routedRows: 1, weightSum: 1 }] }) // '1,0,0.0000;a:1:1.0000' */
export function formatRoutingSummary(s: RoutingSummaryHeader): string {
  let out = `${s.rows},${s.abstained},${s.entropySum.toFixed(4)}`
  for (const e of s.experts) out += `;${e.name}:${e.routedRows}:${e.weightSum.toFixed(4)}`
  return out
}

const count = (s: string | undefined): number => {
  const n = Number(s)
  return Number.isInteger(n) && n >= 0 ? n : Number.NaN
}
const amount = (s: string | undefined): number => {
  const n = Number(s)
  return Number.isFinite(n) && n >= 0 ? n : Number.NaN
}

/**
 * @returns the summary, or undefined when the header is malformed (counted as nothing: a bad header must not
 *   become label values or poison counters)
 */
export function parseRoutingSummary(header: string): RoutingSummaryHeader | undefined {
  const parts = header.split(';')
  const head = (parts[0] ?? '').split(',')
  const rows = count(head[0])
  const abstained = count(head[1])
  const entropySum = amount(head[2])
  if (head.length !== 3 || Number.isNaN(rows + abstained + entropySum) || abstained > rows)
    return undefined
  const experts: RoutingSummaryHeader['experts'] = []
  for (let i = 1; i < parts.length; i++) {
    const [name, r, w, extra] = (parts[i] as string).split(':')
    const routedRows = count(r)
    const weightSum = amount(w)
    if (!name || extra !== undefined || Number.isNaN(routedRows + weightSum) || routedRows > rows)
      return undefined
    experts.push({ name, routedRows, weightSum })
  }
  return { rows, abstained, entropySum, experts }
}
