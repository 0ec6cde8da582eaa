/**
 * int8 storage of low-rank factors (recipe `exclusive.dtype: int8`, issue #18's low-bit lever).
 *
 * A correction is ΔY = ((X·U) ⊙ s(w))·Vᵀ with s = Gather(w, expert_of_rank) ⊙ σ (twin-graph/matrix-corrections.ts).
 * Quantising U per column and Vᵀ per row, symmetric, U ≈ U_q·diag(a) and Vᵀ ≈ diag(b)·V_qᵀ, gives
 *   ΔY ≈ ((X·U_q) ⊙ s(w) ⊙ a ⊙ b)·V_qᵀ,
 * so the per-channel scales fold into σ (σ' = σ ⊙ a ⊙ b) and the graph needs nothing but the Cast it already has for
 * float16: no DequantizeLinear (which onnxruntime keeps unfolded in QDQ graphs), no extra Mul per run. onnxruntime
 * folds Cast(int8 initializer) at load, so serving computes in float32 exactly as before; only the package and the
 * transfer shrink, to a quarter of float32 for U and Vᵀ.
 *
 * Re-quantising a package's own int8 factors (a `--from` delta build that keeps an expert) is exact: every column
 * of U_q has max |value| 127, so its scale is 1 and σ' is unchanged.
 * @module
 */

import type { ITensorProto } from '../onnx/proto.ts'
import { TensorDataType } from '../onnx/proto.ts'

/** int8 factors of one matrix and the σ that carries their scales. */
export interface Int8Factors {
  /** [rows, R] */
  u: Int8Array
  /** [R, cols] */
  vt: Int8Array
  /** [R] σ ⊙ a ⊙ b */
  sigma: Float32Array
}

const Q = 127

/**
 * Symmetric per-rank-column quantisation of U [rows, R] and per-rank-row of Vᵀ [R, cols], scales folded into σ.
 * A column (row) that is all zero keeps scale 1.
 */
export function quantizeFactors(
  u: Float32Array,
  vt: Float32Array,
  sigma: Float32Array,
  rows: number,
  cols: number,
): Int8Factors {
  const R = sigma.length
  const a = new Float64Array(R)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < R; j++) {
      const v = Math.abs(u[i * R + j] as number)
      if (v > (a[j] as number)) a[j] = v
    }
  const b = new Float64Array(R)
  for (let j = 0; j < R; j++) {
    let m = 0
    for (let k = 0; k < cols; k++) m = Math.max(m, Math.abs(vt[j * cols + k] as number))
    b[j] = m
  }
  for (let j = 0; j < R; j++) {
    a[j] = (a[j] as number) > 0 ? (a[j] as number) / Q : 1
    b[j] = (b[j] as number) > 0 ? (b[j] as number) / Q : 1
  }
  const uq = new Int8Array(rows * R)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < R; j++)
      uq[i * R + j] = Math.round((u[i * R + j] as number) / (a[j] as number))
  const vq = new Int8Array(R * cols)
  for (let j = 0; j < R; j++)
    for (let k = 0; k < cols; k++)
      vq[j * cols + k] = Math.round((vt[j * cols + k] as number) / (b[j] as number))
  const s = new Float32Array(R)
  for (let j = 0; j < R; j++) s[j] = (sigma[j] as number) * (a[j] as number) * (b[j] as number)
  return { u: uq, vt: vq, sigma: s }
}

/** An INT8 tensor as raw data (one byte per value, two's complement, as the ONNX spec stores it). */
export function int8Tensor(name: string, values: Int8Array, dims: readonly number[]): ITensorProto {
  const raw = new Uint8Array(
    values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength),
  )
  return { name, dataType: TensorDataType.INT8, dims: [...dims], rawData: raw }
}

/**
 * The float32 values of an INT8 tensor (raw data, or `int32_data` holding one value per entry as the ONNX spec
 * allows); undefined when the tensor is not INT8 or its data does not fill `count` values.
 */
export function int8TensorValues(t: ITensorProto, count: number): Float32Array | undefined {
  if (t.dataType !== TensorDataType.INT8) return undefined
  const raw = t.rawData
  if (raw && raw.byteLength > 0) {
    if (raw.byteLength !== count) return undefined
    return Float32Array.from(new Int8Array(raw.buffer, raw.byteOffset, raw.byteLength))
  }
  const ints = t.int32Data ?? []
  if (ints.length !== count) return undefined
  return Float32Array.from(ints)
}
