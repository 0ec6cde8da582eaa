/**
 * Reads an ONNX model for the builder: decodes the protobuf, resolves initializers stored as external data
 * (the `.onnx` + `.onnx.data` layout that exporters use above 2 GB or on request) into inline raw data, and gives
 * float32 views of initializers. Every failure is an `INVALID_MODEL` AppError that names the file.
 * @module
 */
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, relative, resolve } from 'node:path'
import { AppError } from '@twinserve/shared'
import {
  type GraphProto,
  type IModelProto,
  type ITensorProto,
  type ModelProto,
  onnx,
  TensorDataType,
  toNumber,
} from '../../onnx/proto.ts'

export interface OnnxModel {
  /** Where it was read from (for messages). */
  path: string
  model: ModelProto
  graph: GraphProto
  /** Initializers by name, external data already resolved to `rawData`. */
  initializers: Map<string, ITensorProto>
  /** Bytes on disk, model file plus external data files. */
  sizeBytes: number
}

const D = TensorDataType
/** Bytes per element of each tensor data type, grouped by size. */
const ELEM_BYTES = new Map<number, number>(
  (
    [
      [1, [D.UINT8, D.INT8, D.BOOL]],
      [2, [D.UINT16, D.INT16, D.FLOAT16, D.BFLOAT16]],
      [4, [D.FLOAT, D.INT32, D.UINT32]],
      [8, [D.INT64, D.DOUBLE, D.UINT64]],
    ] as const
  ).flatMap(([bytes, types]) => types.map((t) => [t, bytes] as const)),
)

function invalid(path: string, message: string, cause?: unknown): AppError {
  return new AppError(
    'INVALID_MODEL',
    `${path}: ${message}`,
    cause === undefined ? undefined : { cause },
  )
}

export function tensorDims(t: ITensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d))
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1)
}

/** Decodes ONNX bytes; `label` names the source in errors. */
export function decodeModel(bytes: Uint8Array, label: string): ModelProto {
  let model: ModelProto
  try {
    model = onnx.ModelProto.decode(bytes)
  } catch (err) {
    throw invalid(label, 'is not a readable ONNX model (protobuf decoding failed)', err)
  }
  if (!model.graph || (model.graph.node ?? []).length === 0)
    throw invalid(label, 'is not a readable ONNX model (no graph or no nodes)')
  return model
}

/**
 * Reads `path` and resolves external data relative to the model's directory. External locations must stay
 * inside that directory: an ONNX file is input from users, and a `../../etc/...` location is not a weight file.
 */
export async function readOnnx(path: string): Promise<OnnxModel> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw invalid(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code})`, err)
  }
  const model = decodeModel(bytes, path)
  let sizeBytes = bytes.byteLength
  const dir = dirname(resolve(path))
  const externalFiles = new Map<string, Uint8Array>()
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue
    const name = t.name ?? ''
    const entries = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']))
    const location = entries.get('location')
    if (!location) throw invalid(path, `initializer '${name}' is external but has no location`)
    const file = resolve(dir, location)
    const rel = relative(dir, file)
    if (isAbsolute(location) || rel.startsWith('..'))
      throw invalid(
        path,
        `initializer '${name}': external location '${location}' leaves the model directory`,
      )
    let data = externalFiles.get(file)
    if (!data) {
      try {
        data = await readFile(file)
      } catch (err) {
        throw invalid(
          path,
          `initializer '${name}': external data file '${location}' is missing`,
          err,
        )
      }
      externalFiles.set(file, data)
      sizeBytes += data.byteLength
    }
    const dims = tensorDims(t)
    const elem = ELEM_BYTES.get(t.dataType ?? 0)
    if (elem === undefined)
      throw invalid(path, `initializer '${name}' has unsupported data type ${t.dataType}`)
    const expected = elementCount(dims) * elem
    const offset = Number(entries.get('offset') ?? '0')
    const length = entries.has('length') ? Number(entries.get('length')) : expected
    if (!Number.isInteger(offset) || offset < 0 || length !== expected)
      throw invalid(
        path,
        `initializer '${name}': external data offset ${entries.get('offset')} / length ${entries.get('length')} do not fit shape [${dims.join(',')}] (${expected} bytes)`,
      )
    if (offset + length > data.byteLength)
      throw invalid(
        path,
        `initializer '${name}': external data file '${location}' is truncated (needs ${offset + length} bytes, has ${data.byteLength})`,
      )
    t.rawData = data.subarray(offset, offset + length)
    t.externalData = []
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT
  }
  return indexModel(model, path, sizeBytes)
}

/** Decodes in-memory ONNX bytes (no external data: that needs the model's directory, see readOnnx). */
export function readOnnxBytes(bytes: Uint8Array, label: string): OnnxModel {
  return indexModel(decodeModel(bytes, label), label, bytes.byteLength)
}

export function indexModel(model: ModelProto, path: string, sizeBytes: number): OnnxModel {
  const graph = model.graph as GraphProto
  const initializers = new Map<string, ITensorProto>()
  for (const t of graph.initializer ?? []) {
    const name = t.name ?? ''
    if (initializers.has(name)) throw invalid(path, `initializer '${name}' is defined twice`)
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
      throw invalid(
        path,
        `initializer '${name}' is stored as external data; read the model from its file`,
      )
    initializers.set(name, t)
  }
  return { path, model, graph, initializers, sizeBytes }
}

export function isFloatTensor(t: ITensorProto): boolean {
  return t.dataType === TensorDataType.FLOAT
}

/** A float32 copy of an initializer's values (raw little-endian data or `float_data`). */
export function tensorToFloat32(t: ITensorProto, label = t.name ?? ''): Float32Array {
  if (t.dataType !== TensorDataType.FLOAT)
    throw new AppError('INVALID_MODEL', `tensor '${label}' is not float32 (type ${t.dataType})`)
  const n = elementCount(tensorDims(t))
  const raw = t.rawData
  if (raw && raw.byteLength > 0) {
    if (raw.byteLength !== n * 4)
      throw new AppError(
        'INVALID_MODEL',
        `tensor '${label}' has ${raw.byteLength} bytes of data for ${n} float32 values`,
      )
    // Copy: protobuf byte views are not 4-byte aligned in general.
    const copy = new Uint8Array(raw)
    return new Float32Array(copy.buffer, 0, n)
  }
  const data = t.floatData ?? []
  if (data.length !== n)
    throw new AppError('INVALID_MODEL', `tensor '${label}' has ${data.length} values for ${n}`)
  return Float32Array.from(data)
}

/** Float initializers of a model by name, as float32 copies (other types are left out). */
export function floatInitializers(m: OnnxModel): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const [name, t] of m.initializers)
    if (isFloatTensor(t)) out.set(name, tensorToFloat32(t, `${m.path}: ${name}`))
  return out
}

/** Replaces a float initializer's values in place (raw data, which is what ORT reads fastest). */
export function setTensorFloat32(t: ITensorProto, data: Float32Array): void {
  const bytes = new Uint8Array(data.byteLength)
  bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  t.rawData = bytes
  t.floatData = []
}

/** A copy of `model` whose float initializers named in `values` hold those values instead. */
export function withFloatInitializers(
  model: IModelProto,
  values: ReadonlyMap<string, Float32Array>,
): ModelProto {
  const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
  for (const t of copy.graph?.initializer ?? []) {
    const v = values.get(t.name ?? '')
    if (!v) continue
    if (v.length !== elementCount(tensorDims(t)))
      throw new AppError('INTERNAL', `new values for '${t.name}' have ${v.length} elements`)
    setTensorFloat32(t, v)
  }
  return copy
}
