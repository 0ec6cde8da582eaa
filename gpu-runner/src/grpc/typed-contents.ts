/**
 * `InferTensorContents`: a tensor's elements in the repeated field of its datatype (`fp32_contents` for FP32,
 * `int_contents` for INT8/INT16/INT32, …). FP16 has no field; it travels only as raw content.
 * @module
 */
import { AppError, type Datatype } from '@twinserve/shared'
import type { InferTensorContents } from './messages.ts'
import { bytesElement, type TensorValue } from './raw-tensors.ts'

type ContentsField = keyof InferTensorContents

/** The field each datatype's elements go in. */
export const CONTENTS_FIELD: Record<Datatype, ContentsField | null> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP16: null,
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
}

/**
 * One input's typed contents → its flat element values (count and ranges are checked by the request schema).
 * @throws AppError INVALID_REQUEST when the elements are in another datatype's field or the datatype has none
 */
export function decodeContents(
  name: string,
  datatype: Datatype,
  contents: InferTensorContents,
): TensorValue[] {
  const field = CONTENTS_FIELD[datatype]
  if (field === null)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${name}' is ${datatype}, which has no typed contents field: send it in raw_input_contents`,
    )
  const stray = (Object.keys(CONTENTS_FIELD) as Datatype[])
    .map((d) => CONTENTS_FIELD[d])
    .filter((f): f is ContentsField => f !== null && f !== field && (contents[f]?.length ?? 0) > 0)
  if (stray.length > 0)
    throw new AppError(
      'INVALID_REQUEST',
      `input '${name}' is ${datatype}: its elements go in contents.${field}, not ${[...new Set(stray)].map((f) => `contents.${f}`).join(', ')}`,
    )
  const values = contents[field] ?? []
  if (field === 'bytes_contents')
    return (values as Buffer[]).map((b, i) => bytesElement(name, i, b))
  // int64 / uint64 arrive as decimal strings; beyond ±2^53 the request schema refuses them as out of range.
  if (field === 'int64_contents' || field === 'uint64_contents')
    return (values as string[]).map((v) => Number(v))
  return values as TensorValue[]
}
