/**
 * The base model's inputs and outputs as the builder needs them: element types, dims with the batch axis
 * recognised, V2 metadata for the manifest, and ORT feeds built from example rows (routing data) or from a
 * seeded generator when no examples exist.
 * @module
 */
import { AppError, type Datatype, type TensorMetadata } from '@twinserve/shared'
import type { Dim } from '../../onnx/graph-builder.ts'
import type { GraphProto, IValueInfoProto } from '../../onnx/proto.ts'
import { TensorDataType, toNumber } from '../../onnx/proto.ts'
import { ort } from '../../runtime/ort-session.ts'

export type IoElem = 'float' | 'int64' | 'int32' | 'bool' | 'double'

export interface IoTensor {
  name: string
  elem: IoElem
  /** Symbolic dims as their names; unknown dims as '?'. */
  dims: Dim[]
}

const ELEM_OF: Partial<Record<number, { elem: IoElem; datatype: Datatype }>> = {
  [TensorDataType.FLOAT]: { elem: 'float', datatype: 'FP32' },
  [TensorDataType.INT64]: { elem: 'int64', datatype: 'INT64' },
  [TensorDataType.INT32]: { elem: 'int32', datatype: 'INT32' },
  [TensorDataType.BOOL]: { elem: 'bool', datatype: 'BOOL' },
  [TensorDataType.DOUBLE]: { elem: 'double', datatype: 'FP64' },
}

function toIo(v: IValueInfoProto, label: string): IoTensor & { datatype: Datatype } {
  const t = v.type?.tensorType
  const kind = ELEM_OF[t?.elemType ?? 0]
  if (!t || !kind)
    throw new AppError(
      'INVALID_MODEL',
      `${label} '${v.name}' has element type ${t?.elemType ?? 'unknown'}; float32, float64, int64, int32 and bool are supported`,
    )
  const dims = (t.shape?.dim ?? []).map((d): Dim => {
    if (d.dimParam) return d.dimParam
    const n = d.dimValue == null ? 0 : toNumber(d.dimValue)
    return n > 0 ? n : '?'
  })
  return { name: v.name ?? '', elem: kind.elem, datatype: kind.datatype, dims }
}

/** Graph inputs that are real inputs (old IR versions also list initializers as inputs). */
export function modelInputs(graph: GraphProto): (IoTensor & { datatype: Datatype })[] {
  const inits = new Set((graph.initializer ?? []).map((t) => t.name ?? ''))
  return (graph.input ?? []).filter((v) => !inits.has(v.name ?? '')).map((v) => toIo(v, 'input'))
}

export function modelOutputs(graph: GraphProto): (IoTensor & { datatype: Datatype })[] {
  return (graph.output ?? []).map((v) => toIo(v, 'output'))
}

export function toMetadata(t: IoTensor & { datatype: Datatype }): TensorMetadata {
  return {
    name: t.name,
    datatype: t.datatype,
    shape: t.dims.map((d) => (typeof d === 'number' ? d : -1)),
  }
}

/** The batch size the model fixes (its inputs' first dim), or undefined when it is dynamic. */
export function fixedBatch(inputs: readonly IoTensor[]): number | undefined {
  const first = inputs[0]?.dims[0]
  return typeof first === 'number' ? first : undefined
}

/** The batch dim as the twin inputs should declare it: the base's own symbol or size. */
export function batchDim(inputs: readonly IoTensor[]): Dim {
  const first = inputs[0]?.dims[0]
  return first === undefined || first === '?' ? 'batch' : first
}

/** A graph input whose axis 0 is the batch: the first one declared with the batch's dim. */
export function batchInput(inputs: readonly IoTensor[]): string {
  const b = batchDim(inputs)
  const found = inputs.find((i) => i.dims[0] === b || (b === 'batch' && i.dims[0] === '?'))
  if (!found) throw new AppError('INVALID_MODEL', 'the model has no input with a batch axis')
  return found.name
}

/** One example: flat values per input name, without the batch axis. */
export type ExampleInputs = Record<string, readonly number[]>

/** The per-example shape of an input given its flat length: fixed dims, at most one dynamic one inferred. */
export function exampleShape(input: IoTensor, length: number, where: string): number[] {
  const rest = input.dims.slice(1)
  const fixed = rest.filter((d): d is number => typeof d === 'number').reduce((a, b) => a * b, 1)
  const dynamic = rest.filter((d) => typeof d !== 'number').length
  if (dynamic === 0) {
    if (length !== fixed)
      throw new AppError(
        'INVALID_REQUEST',
        `${where}: input '${input.name}' has ${length} values, the model expects ${fixed} per example ([${rest.join(',')}])`,
      )
    return rest as number[]
  }
  if (dynamic > 1 || length % fixed !== 0 || length === 0)
    throw new AppError(
      'INVALID_REQUEST',
      `${where}: input '${input.name}' has ${length} values, which does not fit [${rest.join(',')}] per example`,
    )
  return rest.map((d) => (typeof d === 'number' ? d : length / fixed))
}

function makeTensor(elem: IoElem, values: ArrayLike<number>, dims: number[]): ort.Tensor {
  switch (elem) {
    case 'float':
      return new ort.Tensor('float32', Float32Array.from(values), dims)
    case 'double':
      return new ort.Tensor('float64', Float64Array.from(values), dims)
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(values), dims)
    case 'int64':
      return new ort.Tensor(
        'int64',
        BigInt64Array.from(Array.from(values), (v) => BigInt(Math.round(v))),
        dims,
      )
    case 'bool':
      return new ort.Tensor(
        'bool',
        Uint8Array.from(values, (v) => (v ? 1 : 0)),
        dims,
      )
  }
}

/**
 * The per-example dims of an input that examples may leave out, or undefined: one with exactly one dynamic dim
 * besides the batch, fed with that dim 0 (a KV cache's past at prefill, `past_key_values.N.key` [batch, heads,
 * past, head_dim] in the Hugging Face decoder layout).
 */
export function emptyDims(input: IoTensor): number[] | undefined {
  const rest = input.dims.slice(1)
  if (rest.filter((d) => typeof d !== 'number').length !== 1) return undefined
  return rest.map((d) => (typeof d === 'number' ? d : 0))
}

/** Stacks examples (all of the same per-example shape) into one batch of feeds. */
export function stackExamples(
  inputs: readonly IoTensor[],
  examples: readonly ExampleInputs[],
  where: string,
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {}
  for (const input of inputs) {
    const first = examples[0]?.[input.name]
    const empty = emptyDims(input)
    if (!first && empty) {
      feeds[input.name] = makeTensor(input.elem, [], [examples.length, ...empty])
      continue
    }
    if (!first)
      throw new AppError('INVALID_REQUEST', `${where}: examples lack input '${input.name}'`)
    const shape = exampleShape(input, first.length, where)
    const values: number[] = []
    for (const ex of examples) {
      const v = ex[input.name]
      if (!v || v.length !== first.length)
        throw new AppError(
          'INVALID_REQUEST',
          `${where}: examples of input '${input.name}' differ in length`,
        )
      for (const x of v) values.push(x)
    }
    feeds[input.name] = makeTensor(input.elem, values, [examples.length, ...shape])
  }
  return feeds
}

/** A seeded xorshift32 generator of uniform [0, 1) values: deterministic and good enough for probe inputs. */
export function xorshift32(seed: number): () => number {
  let state = seed >>> 0 || 1
  return () => {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state / 2 ** 32
  }
}

/**
 * Generated feeds for models without examples: floats uniform in [0, 1) from a seeded generator, integers 0,
 * booleans false; dynamic non-batch dims become `dynamicSize`.
 */
export function syntheticFeeds(
  inputs: readonly IoTensor[],
  batch: number,
  seed: number,
  dynamicSize = 4,
): Record<string, ort.Tensor> {
  const next = xorshift32(seed)
  const feeds: Record<string, ort.Tensor> = {}
  for (const input of inputs) {
    const dims = input.dims.map((d, i) =>
      i === 0 ? batch : typeof d === 'number' ? d : dynamicSize,
    )
    const n = dims.reduce((a, b) => a * b, 1)
    const values = new Float64Array(n)
    if (input.elem === 'float' || input.elem === 'double')
      for (let i = 0; i < n; i++) values[i] = next()
    feeds[input.name] = makeTensor(input.elem, values, dims)
  }
  return feeds
}
