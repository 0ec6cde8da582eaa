/**
 * Reads an ONNX model for the builder: decodes the protobuf, resolves initializers stored as external data
 * (the `.onnx` + `.onnx.data` layout that exporters use above 2 GB or on request) into inline raw data, and gives
 * float32 views of initializers. Every failure is an `INVALID_MODEL` AppError that names the file.
 * @module
 */
import { readFile, stat } from 'node:fs/promises'
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
import { type Normalised, normaliseModel } from './normalise.ts'
import { NotProtobuf, scanModel } from './scan-onnx.ts'
import { inlineFloat32, readLocation, setLocation, type TensorLocation } from './tensor-data.ts'

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

/** The bytes of a model file; a missing or unreadable file is an INVALID_MODEL naming it. */
async function readModelFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw invalid(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code})`, err)
  }
}

/**
 * Where an initializer stored as external data has its bytes, checked: the location must stay inside the model's
 * directory (an ONNX file is input from users, and a `../../etc/...` location is not a weight file), the file must
 * exist, and offset and length must fit the tensor and the file.
 * @param sizes file sizes already looked up, by absolute path
 */
async function externalLocation(
  path: string,
  t: ITensorProto,
  sizes: Map<string, number>,
): Promise<TensorLocation> {
  const dir = dirname(resolve(path))
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
  let size = sizes.get(file)
  if (size === undefined) {
    try {
      size = (await stat(file)).size
    } catch (err) {
      throw invalid(path, `initializer '${name}': external data file '${location}' is missing`, err)
    }
    sizes.set(file, size)
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
  if (offset + length > size)
    throw invalid(
      path,
      `initializer '${name}': external data file '${location}' is truncated (needs ${offset + length} bytes, has ${size})`,
    )
  return { file, offset, length }
}

/** Reads `path` with every initializer's data in memory (external data resolved into inline raw data). */
export async function readOnnx(path: string): Promise<OnnxModel> {
  const bytes = await readModelFile(path)
  const model = decodeModel(bytes, path)
  const sizes = new Map<string, number>()
  for (const t of model.graph?.initializer ?? []) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue
    const loc = await externalLocation(path, t, sizes)
    t.rawData = await readLocation(loc, `${path}: ${t.name ?? ''}`)
    t.externalData = []
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT
  }
  const external = [...sizes.values()].reduce((a, b) => a + b, 0)
  return indexModel(model, path, bytes.byteLength + external)
}

/**
 * Reads `path` as a skeleton without reading its weights (scan-onnx.ts): every float32 initializer points at its
 * bytes on disk, in the file or in its external data file, so that only the graph is in memory. Normalised
 * (import/normalise.ts: Constant-node weights, which are read with their nodes, become inline initializers).
 */
export async function openOnnx(path: string): Promise<OnnxModel & Normalised> {
  let scanned: Awaited<ReturnType<typeof scanModel>>
  try {
    scanned = await scanModel(resolve(path))
  } catch (err) {
    if (err instanceof NotProtobuf)
      throw invalid(
        path,
        `is not a readable ONNX model (protobuf decoding failed: ${err.message})`,
        err,
      )
    const code = (err as NodeJS.ErrnoException).code
    throw invalid(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code})`, err)
  }
  const { model } = scanned
  if (!model.graph || (model.graph.node ?? []).length === 0)
    throw invalid(path, 'is not a readable ONNX model (no graph or no nodes)')
  const normalised = normaliseModel(model)
  const sizes = new Map<string, number>()
  for (const t of model.graph.initializer ?? []) {
    // The scan located raw data in the file itself; external data is checked and resolved here.
    if (scanned.located.has(t) || t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL)
      continue
    const resolved = await externalLocation(path, t, sizes)
    if (t.dataType === TensorDataType.FLOAT) setLocation(t, resolved)
    else {
      t.rawData = await readLocation(resolved, `${path}: ${t.name ?? ''}`)
      t.externalData = []
      t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT
    }
  }
  const sizeBytes = scanned.bytes + [...sizes.values()].reduce((a, b) => a + b, 0)
  return { ...indexModel(model, path, sizeBytes, true), ...normalised }
}

/** Decodes in-memory ONNX bytes (no external data: that needs the model's directory, see readOnnx). */
export function readOnnxBytes(bytes: Uint8Array, label: string): OnnxModel {
  return indexModel(decodeModel(bytes, label), label, bytes.byteLength)
}

export function indexModel(
  model: ModelProto,
  path: string,
  sizeBytes: number,
  allowExternal = false,
): OnnxModel {
  const graph = model.graph as GraphProto
  const initializers = new Map<string, ITensorProto>()
  for (const t of graph.initializer ?? []) {
    const name = t.name ?? ''
    if (initializers.has(name)) throw invalid(path, `initializer '${name}' is defined twice`)
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL && !allowExternal)
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

/** A float32 copy of an inline initializer's values (raw little-endian data or `float_data`). */
export function tensorToFloat32(t: ITensorProto, label = t.name ?? ''): Float32Array {
  if (t.dataType !== TensorDataType.FLOAT)
    throw new AppError('INVALID_MODEL', `tensor '${label}' is not float32 (type ${t.dataType})`)
  return inlineFloat32(t, label)
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
