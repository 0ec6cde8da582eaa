/**
 * A small fluent builder for ONNX graphs in memory: used by tests, the model zoo's trainer, the SVD's MatMul
 * graphs and the twin-graph rewriter. Produces encoded ModelProto bytes that onnxruntime loads directly.
 * @module
 */
import {
  type IAttributeProto,
  type INodeProto,
  type ITensorProto,
  type IValueInfoProto,
  onnx,
  TensorDataType,
} from './proto.ts'

/** A dimension: a fixed size, or a symbolic name such as 'batch'. */
export type Dim = number | string

export type ElemType = 'float' | 'int64' | 'int32' | 'bool' | 'double'

const ELEM: Record<ElemType, number> = {
  float: TensorDataType.FLOAT,
  int64: TensorDataType.INT64,
  int32: TensorDataType.INT32,
  bool: TensorDataType.BOOL,
  double: TensorDataType.DOUBLE,
}

export type AttrValue = number | string | number[] | Float32Array | { tensor: ITensorProto }

export function valueInfo(name: string, elem: ElemType, dims: readonly Dim[]): IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: {
          dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })),
        },
      },
    },
  }
}

/** A float tensor with raw little-endian data (the compact form exporters use). */
export function floatTensor(
  name: string,
  data: Float32Array,
  dims: readonly number[],
): ITensorProto {
  return {
    name,
    dataType: TensorDataType.FLOAT,
    dims: [...dims],
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  }
}

export function int64Tensor(
  name: string,
  data: readonly number[],
  dims: readonly number[],
): ITensorProto {
  const buf = new BigInt64Array(data.map((x) => BigInt(x)))
  return {
    name,
    dataType: TensorDataType.INT64,
    dims: [...dims],
    rawData: new Uint8Array(buf.buffer),
  }
}

/** A node attribute from a plain value (integers → INT, other numbers → FLOAT, arrays → INTS, …). */
export function toAttribute(name: string, v: AttrValue): IAttributeProto {
  const A = onnx.AttributeProto.AttributeType
  if (typeof v === 'number')
    return Number.isInteger(v) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v }
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) }
  if (v instanceof Float32Array) return { name, type: A.FLOATS, floats: Array.from(v) }
  if (Array.isArray(v)) return { name, type: A.INTS, ints: v }
  return { name, type: A.TENSOR, t: v.tensor }
}

export class GraphBuilder {
  private readonly nodes: INodeProto[] = []
  private readonly inputs: IValueInfoProto[] = []
  private readonly outputs: IValueInfoProto[] = []
  private readonly initializers: ITensorProto[] = []
  private counter = 0

  constructor(private readonly name: string) {}

  input(name: string, elem: ElemType, dims: readonly Dim[]): this {
    this.inputs.push(valueInfo(name, elem, dims))
    return this
  }

  output(name: string, elem: ElemType, dims: readonly Dim[]): this {
    this.outputs.push(valueInfo(name, elem, dims))
    return this
  }

  initializer(tensor: ITensorProto): this {
    this.initializers.push(tensor)
    return this
  }

  float(name: string, data: Float32Array, dims: readonly number[]): this {
    return this.initializer(floatTensor(name, data, dims))
  }

  int64(name: string, data: readonly number[], dims: readonly number[] = [data.length]): this {
    return this.initializer(int64Tensor(name, data, dims))
  }

  /** Adds a node; returns its first output name. Outputs default to fresh names. */
  node(
    opType: string,
    inputs: readonly string[],
    opts: {
      outputs?: readonly string[]
      name?: string
      attrs?: Record<string, AttrValue>
      domain?: string
    } = {},
  ): string {
    const id = this.counter++
    const outputs = opts.outputs ?? [`${opType.toLowerCase()}_${id}`]
    this.nodes.push({
      name: opts.name ?? `${opType}_${id}`,
      opType,
      domain: opts.domain ?? '',
      input: [...inputs],
      output: [...outputs],
      attribute: Object.entries(opts.attrs ?? {}).map(([k, v]) => toAttribute(k, v)),
    })
    return outputs[0] as string
  }

  /** Encodes the model. opset 17 has LayerNormalization and Gemm as real exporters emit them. */
  build(
    opts: { opset?: number; metadata?: Record<string, string>; producer?: string } = {},
  ): Uint8Array {
    const opset = opts.opset ?? 17
    const model = onnx.ModelProto.create({
      // The IR version each opset came with (opset 19 with IR 9, 21 with IR 10); 8 for the ones before.
      irVersion: opset >= 21 ? 10 : opset >= 19 ? 9 : 8,
      producerName: opts.producer ?? 'twinserve',
      opsetImport: [{ domain: '', version: opset }],
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    })
    return onnx.ModelProto.encode(model).finish()
  }
}
