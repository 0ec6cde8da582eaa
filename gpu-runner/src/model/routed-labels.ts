/**
 * Label names per row for the V2 classification extension: a row answers in the label set of its routed task,
 * the expert with the largest weight the row applied (`expert_weights`); its task reads the first
 * `labels.length` values of the output. Rows that applied no expert (the shared model, an abstained router row,
 * a static variant) have no task and get `undefined`. Formatting `score:index:label` is the REST layer's job.
 * @module
 */
import type { PackageManifest, TensorMetadata } from '@twinserve/shared'

/** Per output name, per row of one request: the label names of that row's routed task. */
export type RowLabels = Record<string, (readonly string[] | undefined)[]>

/** Label names by expert column (undefined where the expert has none), or undefined when no expert has any. */
export function labelsByColumn(
  manifest: PackageManifest,
): (readonly string[] | undefined)[] | undefined {
  if (!manifest.experts.some((e) => e.labels)) return undefined
  const out: (readonly string[] | undefined)[] = Array(manifest.experts.length).fill(undefined)
  for (const e of manifest.experts) out[e.index] = e.labels
  return out
}

/**
 * The outputs labels apply to: the base model's floating-point outputs, [batch, …, classes], whose last dimension
 * is variable or holds every expert's labels (a task reads the first ones).
 */
export function labelledOutputs(
  manifest: PackageManifest,
  byColumn: readonly (readonly string[] | undefined)[],
): string[] {
  const most = Math.max(0, ...byColumn.map((l) => l?.length ?? 0))
  const fits = (o: TensorMetadata) => {
    const last = o.shape[o.shape.length - 1] ?? 0
    return o.shape.length >= 2 && (last === -1 || last >= most)
  }
  return manifest.outputs
    .filter(
      (o) => (o.datatype === 'FP32' || o.datatype === 'FP16' || o.datatype === 'FP64') && fits(o),
    )
    .map((o) => o.name)
}

/**
 * Each row's label set from the weights it applied: `weights` is [rows, T] row-major (or one [T] row for every
 * row when `sameForAll`); ties go to the lower column, weights ≤ 0 never win.
 */
export function rowLabels(
  weights: ArrayLike<number>,
  rows: number,
  T: number,
  byColumn: readonly (readonly string[] | undefined)[],
  sameForAll = false,
): (readonly string[] | undefined)[] {
  const out: (readonly string[] | undefined)[] = []
  for (let i = 0; i < rows; i++) {
    const base = sameForAll ? 0 : i * T
    let best = -1
    let bestW = 0
    for (let t = 0; t < T; t++) {
      const w = weights[base + t] ?? 0
      if (w > bestW) {
        best = t
        bestW = w
      }
    }
    out.push(best < 0 ? undefined : byColumn[best])
  }
  return out
}
