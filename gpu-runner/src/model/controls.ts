/**
 * Turns a request's merge selection into the twin graph's per-row control inputs (see the contract in
 * shared/src/schemas/twin-package.ts): every row of a request gets the same controls, and rows of different
 * requests can sit side by side in one batch, because the graph reads its controls per row.
 * @module
 */
import { AppError, type MergeSelection, type PackageExpert } from '@twinserve/shared'
import type { RowControls } from '../twin-contract/encode-controls.ts'

/** Column index of each expert name, checking that every named expert exists. */
export function expertColumns(
  names: readonly string[],
  experts: readonly PackageExpert[],
  model: string,
): number[] {
  return names.map((name) => {
    const e = experts.find((x) => x.name === name)
    if (!e)
      throw new AppError(
        'UNKNOWN_EXPERT',
        `model '${model}' has no expert '${name}'; its experts are ${experts.map((x) => x.name).join(', ')}`,
      )
    return e.index
  })
}

/**
 * Per-row controls for the factored paths (router or explicit mix); one request's row, repeated for each of its
 * rows when batched. Controls left out get the spec's default (zero: the shared model).
 */
export function rowControls(
  selection: Extract<MergeSelection, { kind: 'router' | 'explicit' }> | { kind: 'zero' },
  experts: readonly PackageExpert[],
  model: string,
): RowControls {
  const T = experts.length
  if (selection.kind === 'zero') return {}
  if (selection.kind === 'explicit') {
    const mix = new Float32Array(T)
    const names = Object.keys(selection.experts)
    expertColumns(names, experts, model).forEach((col, i) => {
      mix[col] = selection.experts[names[i] as string] ?? 0
    })
    return { mixWeights: mix }
  }
  const mask = new Float32Array(T).fill(1)
  for (const col of expertColumns(selection.exclude, experts, model)) mask[col] = 0
  if (selection.exclude.length >= T)
    throw new AppError(
      'INVALID_REQUEST',
      `exclude_experts removes every expert of model '${model}'; keep at least one (or use variant 'shared')`,
    )
  // k beyond the experts left is dense; the graph clamps k to T, and masked experts already weigh 0.
  return {
    useRouter: 1,
    expertMask: mask,
    topK: Math.min(selection.topK ?? T, T),
    ...(selection.abstainBelow !== undefined ? { abstainBelow: selection.abstainBelow } : {}),
  }
}
