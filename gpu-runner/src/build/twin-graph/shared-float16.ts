/**
 * float16 storage of the shared model's weights in the twin graph (recipe `shared_dtype: float16`, issue #18). On
 * a small model the shared weights are a large share of the package (the text zoo's: 1.95 MB, 17% of its six
 * experts' bytes, two thirds of it the token embedding), and unlike the factors they are paid once.
 *
 * Two halves, so that nothing the builder verifies changes meaning:
 * - the merge pass rounds each weight of the shared merge to float16 values (`roundToFloat16`) BEFORE the
 *   exclusive knowledge is taken against it: v_t = θ_t − fp16(θ_s), so a one-hot mix still gives θ_t (up to the
 *   factors' own compression) and all-zero weights give the rounded shared model, which is the shared model the
 *   package serves;
 * - the written twin graph stores those weights as FLOAT16 initializers under their own names (the naming
 *   convention of shared/src/schemas/twin-package.ts still finds `<w>`), each read through one Cast to float32
 *   that onnxruntime folds when it creates the session: serving computes in float32 exactly as before.
 * Vectors (biases, LayerNorm) stay float32: they are small, and their deltas are exact anyway.
 * @module
 */
import { decodeFloat16, encodeFloat16 } from '../../onnx/float16.ts'
import {
  type IGraphProto,
  type INodeProto,
  type ITensorProto,
  type ModelProto,
  onnx,
  TensorDataType,
} from '../../onnx/proto.ts'
import { readFloat32 } from '../import/tensor-data.ts'

/** Whether a shared tensor of these dims is stored as float16 under `shared_dtype: float16`: weights, not vectors. */
export function storedAsFloat16(dims: readonly number[]): boolean {
  return dims.length >= 2
}

/** float32 values rounded to the nearest float16 (ties to even), as float32: what the Cast gives back. */
export function roundToFloat16(values: Float32Array): Float32Array {
  return decodeFloat16(encodeFloat16(values))
}

/** Every node of a graph and of its subgraphs (the router gate's `If` branches read outer-scope weights). */
function* allNodes(graph: IGraphProto): Generator<INodeProto> {
  for (const n of graph.node ?? []) {
    yield n
    for (const a of n.attribute ?? []) {
      if (a.g) yield* allNodes(a.g)
      for (const g of a.graphs ?? []) yield* allNodes(g)
    }
  }
}

/**
 * Stores the named float32 initializers of `model` (the written shared model's weights, already rounded by the
 * merge pass) as FLOAT16 under the same names, every use reading `<name>.twin_f32` = Cast(<name>) instead. A
 * weight that is also a graph input (IR < 4 exporters) keeps float32: its declared type would no longer match.
 * @returns how many bytes the file saves
 */
export async function storeSharedAsFloat16(
  model: ModelProto,
  names: ReadonlySet<string>,
): Promise<number> {
  const graph = model.graph
  if (!graph) return 0
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ''))
  const renamed = new Map<string, string>()
  let saved = 0
  const initializers: ITensorProto[] = []
  for (const t of graph.initializer ?? []) {
    const name = t.name ?? ''
    const dims = (t.dims ?? []).map(Number)
    if (
      !names.has(name) ||
      inputs.has(name) ||
      t.dataType !== TensorDataType.FLOAT ||
      !storedAsFloat16(dims)
    ) {
      initializers.push(t)
      continue
    }
    const bits = encodeFloat16(await readFloat32(t, name))
    const raw = new Uint8Array(bits.length * 2)
    const view = new DataView(raw.buffer)
    for (let i = 0; i < bits.length; i++) view.setUint16(i * 2, bits[i] as number, true)
    initializers.push(
      onnx.TensorProto.create({ name, dataType: TensorDataType.FLOAT16, dims, rawData: raw }),
    )
    renamed.set(name, `${name}.twin_f32`)
    saved += bits.length * 2
  }
  if (renamed.size === 0) return 0
  for (const n of allNodes(graph))
    n.input = (n.input ?? []).map((i) => renamed.get(i) ?? i) as typeof n.input
  const casts = [...renamed].map(([from, to]) =>
    onnx.NodeProto.create({
      name: `${from}/cast_f32`,
      opType: 'Cast',
      input: [from],
      output: [to],
      attribute: [
        onnx.AttributeProto.create({
          name: 'to',
          type: onnx.AttributeProto.AttributeType.INT,
          i: TensorDataType.FLOAT,
        }),
      ],
    }),
  )
  graph.initializer = initializers as typeof graph.initializer
  graph.node = [...casts, ...(graph.node ?? [])] as typeof graph.node
  return saved
}
