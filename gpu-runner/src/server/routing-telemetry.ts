/**
 * Per-expert telemetry of routed rows (issue #19): from the weights the twin graph applied to each row the router
 * chose for, what `/metrics` counts per model and expert. Rows with an explicit mix, a variant or a fan-out are
 * the caller's choice, not the router's, and are not summarised.
 * @module
 */

import { ROUTED_WEIGHT_THRESHOLD } from '@twinserve/shared'

export interface RoutingSummary {
  /** Rows the router weighed, abstained ones included. */
  rows: number
  /** Rows whose applied weights were all 0: the router was too unsure, the shared model answered. */
  abstained: number
  /** Per expert column: rows with weight > ROUTED_WEIGHT_THRESHOLD. */
  routedRows: number[]
  /** Per expert column: the sum of its weight over the rows (÷ rows = its mean routed weight). */
  weightSum: number[]
  /** Per row that applied an expert: the entropy (nats) of its weights, normalised to sum to 1. */
  entropies: number[]
}

/**
 * @param weights the applied weights, [rows, T] row-major
 * @example summarizeRouting(Float32Array.of(0.9, 0.1, 0, 0), 2) // rows 2, abstained 1, routedRows [1, 0]
 */
export function summarizeRouting(weights: Float32Array, T: number): RoutingSummary {
  const rows = T > 0 ? Math.floor(weights.length / T) : 0
  const out: RoutingSummary = {
    rows,
    abstained: 0,
    routedRows: Array<number>(T).fill(0),
    weightSum: Array<number>(T).fill(0),
    entropies: [],
  }
  for (let r = 0; r < rows; r++) {
    const row = weights.subarray(r * T, (r + 1) * T) // [T]
    let sum = 0
    for (let j = 0; j < T; j++) {
      const w = row[j] ?? 0
      sum += w
      out.weightSum[j] = (out.weightSum[j] ?? 0) + w
      if (w > ROUTED_WEIGHT_THRESHOLD) out.routedRows[j] = (out.routedRows[j] ?? 0) + 1
    }
    if (sum <= 0) {
      out.abstained++
      continue
    }
    let h = 0
    for (let j = 0; j < T; j++) {
      const p = (row[j] ?? 0) / sum
      if (p > 0) h -= p * Math.log(p)
    }
    out.entropies.push(h)
  }
  return out
}
