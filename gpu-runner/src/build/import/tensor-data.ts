/**
 * Tensors whose bytes stay on disk. The builder never holds every expert's weights at once (mergekit's lazy
 * loader): a model is read as a *skeleton*, its float initializers marked as external data that points, by absolute
 * path, offset and length, into the file that holds them: the user's `.onnx` (protobuf raw data is stored
 * contiguously, so an inline tensor is a byte range of the file too), its external data file, or a file this build
 * wrote. Values are read one tensor at a time when a step needs them. Skeletons never reach onnxruntime or a package
 * as they are: write-model.ts turns them into self-contained files (or relative external data).
 * @module
 */
import { open } from 'node:fs/promises'
import { AppError } from '@twinserve/shared'
import { type ITensorProto, onnx, TensorDataType } from '../../onnx/proto.ts'

export interface TensorLocation {
  /** Absolute path of the file holding the bytes. */
  file: string
  offset: number
  length: number
}

const EXTERNAL = onnx.TensorProto.DataLocation.EXTERNAL

/** Where an external tensor's bytes are (its `location` as the skeleton holds it: absolute). */
export function locationOf(t: ITensorProto): TensorLocation | undefined {
  if (t.dataLocation !== EXTERNAL) return undefined
  const e = new Map((t.externalData ?? []).map((x) => [x.key ?? '', x.value ?? '']))
  const file = e.get('location')
  if (!file) return undefined
  return { file, offset: Number(e.get('offset') ?? 0), length: Number(e.get('length') ?? 0) }
}

/** Points a tensor at bytes on disk (dropping any inline data). */
export function setLocation(t: ITensorProto, loc: TensorLocation): void {
  t.rawData = new Uint8Array(0)
  t.floatData = []
  t.dataLocation = EXTERNAL
  t.externalData = [
    { key: 'location', value: loc.file },
    { key: 'offset', value: String(loc.offset) },
    { key: 'length', value: String(loc.length) },
  ]
}

/** The bytes at a location, in a buffer of their own (aligned for typed-array views). */
export async function readLocation(loc: TensorLocation, label: string): Promise<Uint8Array> {
  const out = new Uint8Array(loc.length)
  let handle: Awaited<ReturnType<typeof open>> | undefined
  try {
    handle = await open(loc.file, 'r')
    let done = 0
    while (done < loc.length) {
      const { bytesRead } = await handle.read(out, done, loc.length - done, loc.offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    if (done !== loc.length)
      throw new AppError(
        'INVALID_MODEL',
        `tensor '${label}': ${loc.file} ends before its data (needs ${loc.offset + loc.length} bytes)`,
      )
  } catch (err) {
    if (err instanceof AppError) throw err
    throw new AppError('INVALID_MODEL', `tensor '${label}': cannot read ${loc.file}`, {
      cause: err,
    })
  } finally {
    await handle?.close()
  }
  return out
}

/** A float32 tensor's values, from disk when it is external. */
export async function readFloat32(t: ITensorProto, label = t.name ?? ''): Promise<Float32Array> {
  if (t.dataType !== TensorDataType.FLOAT)
    throw new AppError('INVALID_MODEL', `tensor '${label}' is not float32 (type ${t.dataType})`)
  const loc = locationOf(t)
  if (!loc) return inlineFloat32(t, label)
  const bytes = await readLocation(loc, label)
  return new Float32Array(bytes.buffer, 0, bytes.byteLength / 4)
}

/** A float32 copy of an inline initializer's values (raw little-endian data or `float_data`). */
export function inlineFloat32(t: ITensorProto, label: string): Float32Array {
  const n = (t.dims ?? []).reduce<number>((a, d) => a * Number(d), 1)
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

/** The little-endian bytes of float32 values (a view, no copy). */
export function floatBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength)
}
