/**
 * Router features: the shared model's value of one tensor per example, mean-pooled per row over every axis but
 * the batch's and the last (as the twin graph pools it), read in batches through onnxruntime.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { TensorProbe } from '../graph/probe.ts'
import {
  leadLayout,
  type RowLayout,
  rowOf as rowOfPosition,
  type TensorLayout,
} from '../graph/row-layout.ts'
import { type IoTensor, stackExamples } from '../import/model-io.ts'
import type { RoutingExample } from './routing-data.ts'

export interface Features {
  /** [n, d] row-major. */
  x: Float32Array
  /** [n] expert index per row. */
  y: Int32Array
  d: number
}

/** The router feature's layout, which must have the batch on an axis before the last (feature) axis. */
export function featureRows(name: string, layout: TensorLayout): RowLayout {
  if (layout.kind !== 'rows' || layout.axis >= layout.rank - 1)
    throw new AppError(
      'INVALID_REQUEST',
      `router feature '${name}' must have the batch on an axis before its last (feature) axis (got rank ${layout.rank}, ${layout.kind === 'rows' ? `batch on axis ${layout.axis}` : 'no batch axis: it is the same for every example'})`,
    )
  return layout
}

/**
 * Mean per batch row over every axis but the batch's and the last → [batch, d], as the twin graph pools the
 * feature (twin-graph/router-feature.ts). Without a layout the batch is axis 0.
 */
export function poolRows(
  data: Float32Array,
  dims: readonly number[],
  layout: RowLayout = leadLayout(dims.length),
  batch = dims[0] ?? 0,
): { rows: Float32Array; d: number } {
  const d = dims.at(-1) ?? 0
  const positions = dims.slice(0, -1).reduce((a, b) => a * b, 1)
  const mid = positions / batch
  if (
    dims.length < 2 ||
    layout.axis >= dims.length - 1 ||
    !Number.isInteger(mid) ||
    positions * d !== data.length
  )
    throw new AppError(
      'INVALID_REQUEST',
      `router feature has dims [${dims.join(',')}]; expected the batch (${batch}) on an axis before the last`,
    )
  if (mid === 1 && layout.axis === 0) return { rows: data, d }
  const rowOf = rowOfPosition(layout, dims, batch)
  const rows = new Float32Array(batch * d)
  for (let p = 0; p < positions; p++) {
    const b = rowOf(p)
    for (let j = 0; j < d; j++)
      rows[b * d + j] = (rows[b * d + j] as number) + (data[p * d + j] as number) / mid
  }
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
  opts: { batch?: number; layout?: RowLayout; dir?: string; onBatch?: (done: number) => void } = {},
): Promise<Features> {
  const probe = await TensorProbe.open(model, [feature], undefined, opts.dir)
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
      const pooled = poolRows(t.data as Float32Array, t.dims, opts.layout, group.length)
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
