/**
 * Writes an ONNX model one tensor at a time, so that no step holds a whole model's weights: the graph and its
 * integer tensors are encoded in memory, every float32 initializer is streamed from where it is (a skeleton's file
 * location, or a value computed on the spot by `valueFor`: the shared merge writes each merged tensor as it is
 * made), and the file's sha256 is computed on the way.
 *
 * One protobuf message cannot exceed 2 GB, so a model above `externalAbove` bytes is written with its tensors in
 * an external data file beside it (`<file>.data`, the layout `onnx.external_data_helper` writes and onnxruntime
 * loads from a path); below, as one self-contained file whose tensors are length-delimited fields streamed into
 * the graph message (protobuf fields may come in any order, so they follow the rest of the graph).
 * @module
 */
import { createHash } from 'node:crypto'
import { mkdir, open } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import { AppError } from '@twinserve/shared'
import {
  type GraphProto,
  type ITensorProto,
  type ModelProto,
  onnx,
  TensorDataType,
} from '../../onnx/proto.ts'
import { elementCount, tensorDims } from '../import/read-onnx.ts'
import {
  floatBytes,
  inlineFloat32,
  locationOf,
  readLocation,
  setLocation,
  type TensorLocation,
} from '../import/tensor-data.ts'

/** Protobuf's limit for one message, with room for the graph around the tensors. */
export const EXTERNAL_ABOVE = 2 ** 31 - 2 ** 24

export interface WrittenFile {
  /** Absolute path. */
  path: string
  bytes: number
  sha256: string
}

export interface WrittenModel {
  /** The model file, then its external data file when there is one. */
  files: WrittenFile[]
  /** The model as written, as a skeleton: its streamed tensors point into the written file(s). */
  skeleton: ModelProto
}

export interface WriteModelOptions {
  /** Write external data above this many bytes (default EXTERNAL_ABOVE). */
  externalAbove?: number
  /** The bytes of a streamed tensor, when they are not those at its location (e.g. a merge computed now). */
  valueFor?: (t: ITensorProto) => Promise<Uint8Array | undefined>
}

function varint(n: number): number[] {
  const out: number[] = []
  let v = n
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80)
    v = Math.floor(v / 0x80)
  }
  out.push(v)
  return out
}

/** A length-delimited field's tag and length (wire type 2). */
const fieldHead = (field: number, length: number) =>
  Uint8Array.from([...varint((field << 3) | 2), ...varint(length)])

/** Every float32 initializer is streamed: the weights, and what the rewrite adds (factors, router). */
const isStreamed = (t: ITensorProto) => t.dataType === TensorDataType.FLOAT

/** The tensor's fields other than its data (TensorProto.raw_data is field 9). */
function tensorHeader(t: ITensorProto): Uint8Array {
  return onnx.TensorProto.encode({
    name: t.name ?? '',
    dims: t.dims ?? [],
    dataType: t.dataType ?? TensorDataType.FLOAT,
    ...(t.docString ? { docString: t.docString } : {}),
  }).finish()
}

/** Sequential writes with a running sha256. */
class HashedFile {
  private position = 0
  private readonly hash = createHash('sha256')
  private constructor(
    readonly path: string,
    private readonly handle: Awaited<ReturnType<typeof open>>,
  ) {}

  static async create(path: string): Promise<HashedFile> {
    await mkdir(dirname(path), { recursive: true })
    return new HashedFile(path, await open(path, 'w'))
  }

  get offset(): number {
    return this.position
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.hash.update(bytes)
    let done = 0
    while (done < bytes.byteLength) {
      const { bytesWritten } = await this.handle.write(bytes, done, bytes.byteLength - done)
      done += bytesWritten
    }
    this.position += bytes.byteLength
  }

  async close(): Promise<WrittenFile> {
    await this.handle.close()
    return { path: this.path, bytes: this.position, sha256: this.hash.digest('hex') }
  }
}

/** Writes `model` to `path` (absolute); the model is not changed. */
export async function writeModel(
  path: string,
  model: ModelProto,
  opts: WriteModelOptions = {},
): Promise<WrittenModel> {
  if (!model.graph) throw new AppError('INTERNAL', 'writeModel: the model has no graph')
  // Shallow copies: the caller's model is not changed, and its tensors' data is not copied.
  const graph = onnx.GraphProto.fromObject({}) as GraphProto
  Object.assign(graph, model.graph)
  const skeleton = onnx.ModelProto.fromObject({}) as ModelProto
  Object.assign(skeleton, model, { graph })
  const all = graph.initializer ?? []
  const streamed = all.filter(isStreamed)
  const kept = all.filter((t) => !isStreamed(t))
  const sizeOf = (t: ITensorProto) => elementCount(tensorDims(t)) * 4
  const headers = streamed.map(tensorHeader)
  const messages = streamed.map((t, i) => {
    const inner =
      (headers[i] as Uint8Array).byteLength + fieldHead(9, sizeOf(t)).byteLength + sizeOf(t)
    return fieldHead(5, inner).byteLength + inner
  })
  const inlineTotal = messages.reduce((a, b) => a + b, 0)
  const external = inlineTotal > (opts.externalAbove ?? EXTERNAL_ABOVE)
  const dataOf = async (t: ITensorProto): Promise<Uint8Array> => {
    const given = await opts.valueFor?.(t)
    const loc = locationOf(t)
    const label = t.name ?? ''
    const bytes =
      given ?? (loc ? await readLocation(loc, label) : floatBytes(inlineFloat32(t, label)))
    if (bytes.byteLength !== sizeOf(t))
      throw new AppError(
        'INTERNAL',
        `writeModel: tensor '${t.name}' has ${bytes.byteLength} bytes, not ${sizeOf(t)}`,
      )
    return bytes
  }
  const where: TensorLocation[] = []
  const files: WrittenFile[] = []
  if (external) {
    const dataPath = `${path}.data`
    const data = await HashedFile.create(dataPath)
    for (const t of streamed) {
      const bytes = await dataOf(t)
      where.push({ file: dataPath, offset: data.offset, length: bytes.byteLength })
      await data.write(bytes)
    }
    const dataFile = await data.close()
    // In the file, locations are relative (the model's own directory); in the skeleton, absolute.
    graph.initializer = [
      ...kept,
      ...streamed.map((t, i) =>
        locatedCopy(t, { ...(where[i] as TensorLocation), file: basename(dataPath) }),
      ),
    ]
    const file = await HashedFile.create(path)
    await file.write(onnx.ModelProto.encode(skeleton).finish())
    files.push(await file.close(), dataFile)
  } else {
    graph.initializer = kept
    const graphHead = onnx.GraphProto.encode(graph).finish()
    const modelHead = onnx.ModelProto.encode({ ...skeleton, graph: null }).finish()
    const file = await HashedFile.create(path)
    await file.write(modelHead)
    await file.write(fieldHead(7, graphHead.byteLength + inlineTotal))
    await file.write(graphHead)
    for (const [i, t] of streamed.entries()) {
      const bytes = await dataOf(t)
      const header = headers[i] as Uint8Array
      const raw = fieldHead(9, bytes.byteLength)
      await file.write(fieldHead(5, header.byteLength + raw.byteLength + bytes.byteLength))
      await file.write(header)
      await file.write(raw)
      where.push({ file: path, offset: file.offset, length: bytes.byteLength })
      await file.write(bytes)
    }
    files.push(await file.close())
  }
  const located = new Map(streamed.map((t, i) => [t, locatedCopy(t, where[i] as TensorLocation)]))
  graph.initializer = all.map((t) => located.get(t) ?? t)
  return { files, skeleton }
}

/** A float tensor's header fields, pointing at `loc`. */
function locatedCopy(t: ITensorProto, loc: TensorLocation): ITensorProto {
  const copy: ITensorProto = {
    name: t.name ?? '',
    dims: t.dims ?? [],
    dataType: TensorDataType.FLOAT,
  }
  setLocation(copy, loc)
  return copy
}
