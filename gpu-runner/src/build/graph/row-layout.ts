/**
 * How a tensor lines up with the batch, as the rewrite needs it: the per-row expert weights ([batch, K]) are
 * broadcast to each corrected node's output, and the router pools its feature per row. The batch sits on one axis,
 * alone (`[batch, seq, d]`, `[seq, batch, d]`) or flattened with other sizes outside and inside it
 * (`[batch·seq, d]`: inner seq; `[seq·batch, d]`: outer seq). Found by batch tracking (batch-axes.ts).
 * @module
 */
import { AppError } from '@twinserve/shared'
import { batchAxisOf, type Extent, type TensorInfo } from './tensor-atoms.ts'

export type { Extent } from './tensor-atoms.ts'

export interface RowLayout {
  kind: 'rows'
  rank: number
  /** The axis that holds the batch. */
  axis: number
  /** What is flattened into that axis outside the batch (row-major: each batch row repeats inside it)… */
  outer: Extent
  /** …and inside it (each batch row spans this many consecutive positions). */
  inner: Extent
}

/** A tensor the same for every row (no batch axis), e.g. a position embedding before it is added to the batch. */
export interface SharedLayout {
  kind: 'shared'
  rank: number
}

export type TensorLayout = RowLayout | SharedLayout

const ONE: Extent = { size: 1, fixed: true }

/** The batch on axis 0 alone: `[batch, …]`. */
export function leadLayout(rank: number): RowLayout {
  return { kind: 'rows', rank, axis: 0, outer: ONE, inner: ONE }
}

/** True when the batch is alone on its axis (no other size flattened into it). */
export function isAlone(l: RowLayout): boolean {
  return l.outer.fixed && l.outer.size === 1 && l.inner.fixed && l.inner.size === 1
}

/** The layout of a tracked tensor; a tensor whose rows cannot be tracked is an error naming it and why. */
export function layoutOf(name: string, info: TensorInfo | undefined): TensorLayout {
  if (!info) throw new AppError('INTERNAL', `no batch tracking for tensor '${name}'`)
  const rank = info.dims.length
  if (info.lost)
    throw new AppError(
      'INVALID_MODEL',
      `cannot track the batch axis of tensor '${name}' (dims [${info.dims.join(',')}] in the probe run): ${info.lost}; exclude the tensors whose corrections land on it from exclusive knowledge, or route from another feature`,
    )
  const b = batchAxisOf(info)
  if (!b) return { kind: 'shared', rank }
  if (!b.outer.fixed && !b.inner.fixed)
    throw new AppError(
      'INVALID_MODEL',
      `cannot track the batch axis of tensor '${name}' (dims [${info.dims.join(',')}]): its axis ${b.axis} flattens input-dependent sizes both outside and inside the batch; exclude the tensors whose corrections land on it from exclusive knowledge`,
    )
  return { kind: 'rows', rank, axis: b.axis, outer: b.outer, inner: b.inner }
}

/** The outer and inner sizes at run time, given the batch axis's dim and the batch size. */
export function extentsAt(
  l: RowLayout,
  dim: number,
  batch: number,
): { outer: number; inner: number } {
  if (l.outer.fixed) return { outer: l.outer.size, inner: dim / (batch * l.outer.size) }
  return { outer: dim / (batch * l.inner.size), inner: l.inner.size }
}

/**
 * For a tensor of `dims` with layout `l`, the batch row of every position along its axes except the last, as a
 * function of the flat index over those axes (row-major): what pooling per row needs on the host.
 */
export function rowOf(
  l: RowLayout,
  dims: readonly number[],
  batch: number,
): (flat: number) => number {
  const dim = dims[l.axis] as number
  const { inner } = extentsAt(l, dim, batch)
  const after = dims.slice(l.axis + 1, -1).reduce((a, b) => a * b, 1)
  return (flat) => Math.floor((Math.floor(flat / after) % dim) / inner) % batch
}
