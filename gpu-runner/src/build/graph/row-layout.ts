/**
 * How a tensor lines up with the batch: the per-row expert weights ([batch, K]) are broadcast to each corrected
 * node's output, so the rewrite must know where that output's batch axis is. Today this is learnt by probing the
 * shared model at two batch sizes (graph/probe.ts); shape inference that follows the batch axis through
 * Transpose/Reshape (e.g. [seq, batch, d] attention layouts) belongs here too.
 * @module
 */
import { AppError } from '@twinserve/shared'

/** How a tensor's leading axis relates to the batch (from probing the model at two batch sizes). */
export type RowLayout = { rank: number; mode: 'lead' } | { rank: 2; mode: 'flat' }

/**
 * Infers how each tensor's leading axis relates to the batch from its dims at two batch sizes: `lead` when it
 * is the batch, `flat` when it is batch × k for a rank-2 tensor (rows flattened from [batch, seq, d]).
 */
export function rowLayout(
  name: string,
  runs: readonly { batch: number; dims: readonly number[] }[],
): RowLayout {
  const first = runs[0]
  if (!first) throw new AppError('INTERNAL', 'rowLayout needs at least one probe run')
  const rank = first.dims.length
  const fail = (why: string) =>
    new AppError(
      'INVALID_MODEL',
      `tensor '${name}' (dims [${first.dims.join(',')}] at batch ${first.batch}) ${why}; exclude the tensors that feed it from exclusive knowledge, or route from another feature`,
    )
  if (rank < 2) throw fail('has no batch axis')
  if (runs.every((r) => r.dims.length === rank && r.dims[0] === r.batch))
    return { rank, mode: 'lead' }
  const k = (first.dims[0] ?? 0) / first.batch
  if (rank === 2 && Number.isInteger(k) && k > 0 && runs.every((r) => r.dims[0] === r.batch * k))
    return { rank: 2, mode: 'flat' }
  throw fail('does not have the batch as its leading axis')
}
