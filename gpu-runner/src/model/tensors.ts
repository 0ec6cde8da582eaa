/**
 * Open Inference Protocol JSON tensors ⇄ onnxruntime tensors: datatype mapping, validation of a request's inputs
 * against the model's declared inputs (names, datatypes, ranks, fixed dimensions, one batch size), row-wise
 * concatenation for batching and row-wise splitting of outputs.
 * @module
 */
import {
  AppError,
  type Datatype,
  flattenTensorData,
  type RequestInput,
  type TensorMetadata,
} from '@twinserve/shared'
import { fromFloat16Bits, toFloat16Bits } from '../onnx/float16.ts'
import { ort } from '../runtime/ort-session.ts'

type OrtType = ort.Tensor.Type
/** Host data of one tensor, in the typed array onnxruntime takes for its type. */
export type HostData = ort.Tensor.DataTypeMap[OrtType]

const V2_TO_ORT: Record<Datatype, OrtType> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
}

const ORT_TO_V2: Partial<Record<OrtType, Datatype>> = Object.fromEntries(
  Object.entries(V2_TO_ORT).map(([v2, o]) => [o, v2 as Datatype]),
)

export function ortTypeOf(datatype: Datatype): OrtType {
  return V2_TO_ORT[datatype]
}

export function datatypeOfOrt(type: OrtType): Datatype {
  const d = ORT_TO_V2[type]
  if (!d) throw new AppError('INTERNAL', `model produced a tensor of unsupported type ${type}`)
  return d
}

type NumericData = Exclude<HostData, string[]>

/** The typed array onnxruntime takes for each numeric type (float16 as its raw bits, bool as bytes). */
const ARRAY_OF: Partial<Record<OrtType, new (n: number) => NumericData>> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  uint16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
  bool: Uint8Array,
  int16: Int16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
}

/** Allocates host data of `type` for `n` elements. */
export function allocate(type: OrtType, n: number): HostData {
  if (type === 'string') return new Array<string>(n).fill('')
  const Data = ARRAY_OF[type]
  if (!Data) throw new AppError('INTERNAL', `unsupported tensor type ${type}`)
  return new Data(n)
}

/** Converts validated V2 JSON values (the schema checked types and ranges) into host data. */
export function toHostData(
  datatype: Datatype,
  values: readonly (number | boolean | string)[],
): HostData {
  const type = ortTypeOf(datatype)
  const out = allocate(type, values.length)
  if (out instanceof BigInt64Array || out instanceof BigUint64Array)
    values.forEach((v, i) => {
      out[i] = BigInt(v as number)
    })
  else if (Array.isArray(out))
    values.forEach((v, i) => {
      out[i] = String(v)
    })
  else if (type === 'bool')
    values.forEach((v, i) => {
      out[i] = v ? 1 : 0
    })
  else if (type === 'float16')
    values.forEach((v, i) => {
      out[i] = toFloat16Bits(v as number)
    })
  else
    values.forEach((v, i) => {
      out[i] = v as number
    })
  return out
}

/** Host data → JSON-able values for a response. */
export function toJsonValues(type: OrtType, data: HostData): (number | boolean | string)[] {
  if (Array.isArray(data)) return data
  if (type === 'bool') return Array.from(data as Uint8Array, (v) => v !== 0)
  if (type === 'float16') return Array.from(data as Uint16Array, fromFloat16Bits)
  if (data instanceof BigInt64Array || data instanceof BigUint64Array)
    // Beyond ±2^53 a JSON number cannot be exact; V2 clients read INT64 as JSON numbers anyway.
    return Array.from(data as ArrayLike<bigint>, (v) => Number(v))
  return Array.from(data as ArrayLike<number>)
}

/** One validated input of one request, ready to be batched. */
export interface HostTensor {
  name: string
  type: OrtType
  dims: number[]
  data: HostData
}

function describe(meta: TensorMetadata): string {
  return `${meta.name} ${meta.datatype} [${meta.shape.join(',')}]`
}

/**
 * Checks a request's inputs against the model's declared inputs and converts them. Dimension 0 is the batch
 * (row) dimension and must agree across inputs.
 * @returns the tensors in the order of `declared`, and the number of rows
 * @throws AppError INVALID_REQUEST naming the input and what is wrong
 */
export function decodeInputs(
  inputs: readonly RequestInput[],
  declared: readonly TensorMetadata[],
): { tensors: HostTensor[]; rows: number } {
  const expects = `the model expects ${declared.map(describe).join('; ')}`
  const byName = new Map<string, RequestInput>()
  for (const input of inputs) {
    if (byName.has(input.name))
      throw new AppError('INVALID_REQUEST', `input '${input.name}' is given twice`)
    if (!declared.some((d) => d.name === input.name))
      throw new AppError('INVALID_REQUEST', `unknown input '${input.name}'; ${expects}`)
    byName.set(input.name, input)
  }
  let rows: number | undefined
  const tensors: HostTensor[] = []
  for (const meta of declared) {
    const input = byName.get(meta.name)
    if (!input) throw new AppError('INVALID_REQUEST', `missing input '${meta.name}'; ${expects}`)
    if (input.datatype !== meta.datatype)
      throw new AppError(
        'INVALID_REQUEST',
        `input '${meta.name}' has datatype ${input.datatype}, the model expects ${meta.datatype}`,
      )
    const shapeProblem = (): AppError =>
      new AppError(
        'INVALID_REQUEST',
        `input '${meta.name}' has shape [${input.shape.join(',')}], the model expects [${meta.shape.join(',')}] (-1 = any size)`,
      )
    if (input.shape.length !== meta.shape.length) throw shapeProblem()
    meta.shape.forEach((want, i) => {
      const got = input.shape[i] ?? 0
      if (want !== -1 && got !== want) throw shapeProblem()
      if (got === 0)
        throw new AppError(
          'INVALID_REQUEST',
          `input '${meta.name}' has an empty dimension ${i} (shape [${input.shape.join(',')}])`,
        )
    })
    const batch = input.shape[0] ?? 1
    if (rows === undefined) rows = batch
    else if (batch !== rows)
      throw new AppError(
        'INVALID_REQUEST',
        `inputs disagree on the batch size (dimension 0): '${meta.name}' has ${batch}, others ${rows}`,
      )
    tensors.push({
      name: meta.name,
      type: ortTypeOf(meta.datatype),
      dims: [...input.shape],
      data: toHostData(
        meta.datatype,
        flattenTensorData(input.data) as (number | boolean | string)[],
      ),
    })
  }
  return { tensors, rows: rows ?? 1 }
}

/** Concatenates same-named tensors of several requests along dimension 0. */
export function concatRows(parts: readonly HostTensor[]): ort.Tensor {
  const first = parts[0]
  if (!first) throw new AppError('INTERNAL', 'concatRows of nothing')
  if (parts.length === 1) return new ort.Tensor(first.type, first.data, first.dims)
  const rows = parts.reduce((n, p) => n + (p.dims[0] ?? 0), 0)
  const total = parts.reduce((n, p) => n + p.data.length, 0)
  const out = allocate(first.type, total)
  let offset = 0
  for (const p of parts) {
    if (Array.isArray(out))
      (p.data as string[]).forEach((v, i) => {
        out[offset + i] = v
      })
    else (out as Float32Array).set(p.data as unknown as Float32Array, offset)
    offset += p.data.length
  }
  return new ort.Tensor(first.type, out, [rows, ...first.dims.slice(1)])
}

/** Rows [from, to) of an output tensor, as a V2 response tensor. */
export function sliceRows(
  name: string,
  tensor: ort.Tensor,
  from: number,
  to: number,
): { name: string; datatype: Datatype; shape: number[]; data: (number | boolean | string)[] } {
  const dims = tensor.dims
  const per = dims.slice(1).reduce((a, b) => a * b, 1)
  const data = tensor.data as HostData
  const part = data.slice(from * per, to * per) as HostData
  return {
    name,
    datatype: datatypeOfOrt(tensor.type),
    shape: [to - from, ...dims.slice(1)],
    data: toJsonValues(tensor.type, part),
  }
}
