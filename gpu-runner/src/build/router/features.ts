/**
 * Router features: the shared model's value of one tensor per example, mean-pooled over the middle axes when
 * it is [batch, …, d] (as the twin graph pools it), read in batches through onnxruntime.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { TensorProbe } from '../graph/probe.ts'
import { type IoTensor, stackExamples } from '../import/model-io.ts'
import type { RoutingExample } from './routing-data.ts'

export interface Features {
  /** [n, d] row-major. */
  x: Float32Array
  /** [n] expert index per row. */
  y: Int32Array
  d: number
}

/** Mean over the middle axes of a [batch, …, d] tensor → [batch, d]. */
export function poolRows(
  data: Float32Array,
  dims: readonly number[],
): { rows: Float32Array; d: number } {
  const batch = dims[0] ?? 0
  const d = dims.at(-1) ?? 0
  const mid = dims.slice(1, -1).reduce((a, b) => a * b, 1)
  if (dims.length < 2 || batch * mid * d !== data.length)
    throw new AppError(
      'INVALID_REQUEST',
      `router feature has dims [${dims.join(',')}]; expected [batch, …, d]`,
    )
  if (mid === 1) return { rows: data, d }
  const rows = new Float32Array(batch * d)
  for (let b = 0; b < batch; b++)
    for (let m = 0; m < mid; m++)
      for (let j = 0; j < d; j++)
        rows[b * d + j] =
          (rows[b * d + j] as number) + (data[(b * mid + m) * d + j] as number) / mid
  return { rows, d }
}

/** Groups consecutive examples whose inputs have the same lengths into batches of at most `batch`. */
export function* batchesOf<T extends { inputs: Record<string, readonly number[]> }>(
  examples: readonly T[],
  batch: number,
): Generator<T[]> {
  let current: T[] = []
  let key = ''
  for (const ex of examples) {
    const k = Object.values(ex.inputs)
      .map((v) => v.length)
      .join(',')
    if (current.length > 0 && (k !== key || current.length >= batch)) {
      yield current
      current = []
    }
    key = k
    current.push(ex)
  }
  if (current.length > 0) yield current
}

export async function extractFeatures(
  model: IModelProto,
  feature: string,
  inputs: readonly IoTensor[],
  examples: readonly RoutingExample[],
  opts: { batch?: number; onBatch?: (done: number) => void } = {},
): Promise<Features> {
  const probe = await TensorProbe.open(model, [feature])
  const chunks: Float32Array[] = []
  let d = 0
  let done = 0
  try {
    for (const group of batchesOf(examples, opts.batch ?? 256)) {
      const out = await probe.run(
        stackExamples(
          inputs,
          group.map((g) => g.inputs),
          'router data',
        ),
        [feature],
      )
      const t = out.get(feature)
      if (t?.type !== 'float32')
        throw new AppError('INVALID_REQUEST', `router feature '${feature}' is not a float32 tensor`)
      const pooled = poolRows(t.data as Float32Array, t.dims)
      if (d !== 0 && pooled.d !== d)
        throw new AppError(
          'INVALID_REQUEST',
          `router feature '${feature}' changes width (${d} vs ${pooled.d})`,
        )
      d = pooled.d
      chunks.push(pooled.rows.slice())
      done += group.length
      opts.onBatch?.(done)
    }
  } finally {
    await probe.release()
  }
  const x = new Float32Array(examples.length * d)
  let at = 0
  for (const c of chunks) {
    x.set(c, at)
    at += c.length
  }
  return { x, y: Int32Array.from(examples, (e) => e.expert), d }
}
