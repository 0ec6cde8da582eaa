/**
 * Reads an ONNX file without reading its weights: the protobuf wire format is walked field by field with
 * positional reads, and each initializer's `raw_data` is skipped, its offset and length in the file kept instead
 * (tensor-data.ts). Everything else (nodes, inputs, metadata, integer tensors) is read and decoded as usual. Opening
 * a BERT-base-sized expert this way reads a few hundred kilobytes, not its 400 MB, so a build reads each weight once,
 * when it merges it.
 * @module
 */
import { open } from 'node:fs/promises'
import {
  type GraphProto,
  type ITensorProto,
  type ModelProto,
  onnx,
  TensorDataType,
  type TensorProto,
} from '../../onnx/proto.ts'
import { setLocation } from './tensor-data.ts'

/** Thrown for bytes that are not protobuf; the caller names the file. */
export class NotProtobuf extends Error {}

/** Positional reads through a window, so that many small fields cost few reads. */
class Reader {
  private window = new Uint8Array(0)
  private at = 0

  constructor(
    private readonly handle: Awaited<ReturnType<typeof open>>,
    readonly size: number,
  ) {}

  async bytes(pos: number, len: number): Promise<Uint8Array> {
    if (pos < 0 || len < 0 || pos + len > this.size)
      throw new NotProtobuf('a field runs past the end of the file')
    if (pos >= this.at && pos + len <= this.at + this.window.byteLength)
      return this.window.subarray(pos - this.at, pos - this.at + len)
    // A small window: the next field is usually just past a skipped tensor, not in the bytes after this one.
    const want = Math.min(Math.max(len, 1 << 16), this.size - pos)
    const buf = new Uint8Array(want)
    let done = 0
    while (done < want) {
      const { bytesRead } = await this.handle.read(buf, done, want - done, pos + done)
      if (bytesRead === 0) throw new NotProtobuf('the file ended early')
      done += bytesRead
    }
    this.window = buf
    this.at = pos
    return buf.subarray(0, len)
  }

  /** A varint at `pos`: its value and the position after it. */
  async varint(pos: number, end: number): Promise<[number, number]> {
    const b = await this.bytes(pos, Math.min(10, end - pos))
    let value = 0
    let scale = 1
    for (let i = 0; i < b.byteLength; i++) {
      const byte = b[i] as number
      value += (byte & 0x7f) * scale
      scale *= 128
      if (byte < 0x80) return [value, pos + i + 1]
    }
    throw new NotProtobuf('a varint does not end')
  }
}

interface Field {
  field: number
  /** Where the field's key starts, its value starts and ends. */
  key: number
  start: number
  end: number
}

/** The fields of the message in [start, end). */
async function fields(r: Reader, start: number, end: number): Promise<Field[]> {
  const out: Field[] = []
  let pos = start
  while (pos < end) {
    const [key, afterKey] = await r.varint(pos, end)
    const wire = key % 8
    const field = Math.floor(key / 8)
    let valueStart = afterKey
    let valueEnd: number
    if (wire === 0) valueEnd = (await r.varint(afterKey, end))[1]
    else if (wire === 1) valueEnd = afterKey + 8
    else if (wire === 5) valueEnd = afterKey + 4
    else if (wire === 2) {
      const [len, afterLen] = await r.varint(afterKey, end)
      valueStart = afterLen
      valueEnd = afterLen + len
    } else throw new NotProtobuf(`wire type ${wire}`)
    if (field === 0 || valueEnd > end) throw new NotProtobuf('a field does not fit its message')
    out.push({ field, key: pos, start: valueStart, end: valueEnd })
    pos = valueEnd
  }
  return out
}

/** The bytes of `kept` fields, back to back (a message of just those fields). */
async function concat(r: Reader, kept: readonly Field[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  // One at a time: the reads share the reader's window.
  for (const f of kept) parts.push((await r.bytes(f.key, f.end - f.key)).slice())
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

/** TensorProto.raw_data is field 9: a float32 tensor's bytes stay in the file, others are read. */
async function tensor(
  r: Reader,
  file: string,
  f: Field,
  located: Set<ITensorProto>,
): Promise<ITensorProto> {
  const all = await fields(r, f.start, f.end)
  const raw = all.find((x) => x.field === 9)
  const t = onnx.TensorProto.decode(
    await concat(
      r,
      all.filter((x) => x !== raw),
    ),
  )
  // An empty raw_data beside external data (some writers emit both) is no data.
  if (!raw || raw.end === raw.start || t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    return t
  if (t.dataType === TensorDataType.FLOAT) {
    setLocation(t, { file, offset: raw.start, length: raw.end - raw.start })
    located.add(t)
  } else t.rawData = (await r.bytes(raw.start, raw.end - raw.start)).slice()
  return t
}

/** GraphProto.initializer is field 5. */
async function graph(
  r: Reader,
  file: string,
  f: Field,
  located: Set<ITensorProto>,
): Promise<GraphProto> {
  const all = await fields(r, f.start, f.end)
  const inits = all.filter((x) => x.field === 5)
  const g = onnx.GraphProto.decode(
    await concat(
      r,
      all.filter((x) => x.field !== 5),
    ),
  )
  g.initializer = []
  for (const x of inits) g.initializer.push((await tensor(r, file, x, located)) as TensorProto)
  return g
}

/**
 * The model at `file` (absolute), its float32 initializers pointing at their raw data in the file (`located`;
 * tensors stored as external data keep their own, relative, locations).
 * @throws NotProtobuf when the bytes are not a protobuf message; fs errors as they come
 */
export async function scanModel(
  file: string,
): Promise<{ model: ModelProto; bytes: number; located: Set<ITensorProto> }> {
  const handle = await open(file, 'r')
  try {
    const size = (await handle.stat()).size
    const r = new Reader(handle, size)
    const all = await fields(r, 0, size)
    const graphField = all.filter((x) => x.field === 7).at(-1)
    let model: ModelProto
    const located = new Set<ITensorProto>()
    try {
      model = onnx.ModelProto.decode(
        await concat(
          r,
          all.filter((x) => x.field !== 7),
        ),
      )
      if (graphField) model.graph = await graph(r, file, graphField, located)
    } catch (err) {
      if (err instanceof NotProtobuf) throw err
      throw new NotProtobuf(err instanceof Error ? err.message : String(err))
    }
    return { model, bytes: size, located }
  } finally {
    await handle.close()
  }
}
