/**
 * The grouped likelihood graph (issue 14, speed): the likelihood graph (likelihood-graph.ts) rewritten at load so
 * that each one-hot scoring row multiplies only its own expert's ranks.
 *
 * Why: routing by the prompt's likelihood scores T one-hot rows per prompt. The twin graph corrects every use of a
 * factored matrix W per row with all R = T·r stacked ranks,
 *   xu = x·U [.., R];  z = xu ⊙ s(w), s(w) = w[expert_of_rank] ⊙ σ;  ΔY = z·Vᵀ [.., d_out]
 * so a one-hot row multiplies 4/5 of its columns by zero; in the tied LM head ([rows·S, 240] × [240, 2,048]) that
 * was over half of the scoring pass. Here the rows arrive expert-major, T groups of P rows (group e: the P prompts
 * under expert e's one-hot mix), and each such correction becomes a batched product over the groups:
 *   x [T·P, S, d_in] → Reshape [T, P·S, d_in] → MatMul U_g [T, d_in, r] → MatMul V_g [T, r, d_out]
 *     → Reshape to x's leading dims + d_out
 * with U_g[e] = U[:, ranks of e] · diag(σ[ranks of e]) and V_g[e] = Vᵀ[ranks of e, :], float32 initializers
 * built here from the stored factors (float16 and int8 widen exactly; σ is folded in, so the products are summed in
 * another order than the twin graph's: agreement is to float32 rounding, likelihood-graph-grouped.test.ts).
 *
 * Only what the grouping is exact for changes: a correction matches when its factors are initializers (through a
 * Cast and a Transpose), its s(w) is Gather(weights, expert_of_rank) ⊙ σ broadcast with the batch on the leading
 * axis (Unsqueeze, Expand, Reshape), and every expert owns the same number of ranks. Embedding lookups (Gather of
 * U's rows), vector corrections, shared-basis and top-k-gather corrections keep computing from the mix weights,
 * which the scoring pass still feeds (one-hot per row), so they stay right in any row order. The graph is valid
 * for expert-major one-hot rows only: no router row (the engine does not group a pass with one).
 * @module
 */
import { int8TensorValues } from '../factors/int8-factors.ts'
import { decodeFloat16 } from '../onnx/float16.ts'
import { floatTensor, int64Tensor } from '../onnx/graph-builder.ts'
import {
  type IGraphProto,
  type INodeProto,
  type ITensorProto,
  onnx,
  TensorDataType,
  toNumber,
} from '../onnx/proto.ts'
import { type GraphIndex, indexGraph, soleReader } from './graph-index.ts'
import { pruneDeadNodes } from './likelihood-graph.ts'

/** Grouped likelihood-graph bytes and how many corrections were grouped, or why there are none. */
export type GroupedLikelihoodGraph =
  | { bytes: Uint8Array; grouped: number }
  | { unavailable: string }

/** A factor as the correction multiplies with it: [rows, cols] float32, row-major. */
export interface Matrix {
  values: Float32Array
  rows: number
  cols: number
}

/**
 * The grouped likelihood graph of a likelihood graph's bytes (likelihoodGraph's), for T experts; or the reason the
 * rewrite does not apply (the caller keeps the likelihood graph).
 */
export function groupedLikelihoodGraph(
  likelihood: Uint8Array,
  experts: number,
): GroupedLikelihoodGraph {
  const decoded = onnx.ModelProto.decode(likelihood)
  if (!decoded.graph) return { unavailable: 'the model has no graph' }
  const done = groupCorrections(decoded.graph, experts)
  if ('unavailable' in done) return done
  return { bytes: onnx.ModelProto.encode(decoded).finish(), grouped: done.grouped }
}

/**
 * Rewrites a decoded likelihood graph in place (see the module comment).
 * @returns how many corrections were grouped, or why none was (the graph is then unchanged)
 */
export function groupCorrections(
  graph: IGraphProto,
  T: number,
): { grouped: number } | { unavailable: string } {
  if (!Number.isInteger(T) || T < 2) return { unavailable: `${T} experts: nothing to group` }
  const nodes = graph.node ?? []
  const ix = indexGraph(graph)

  const plans: { at: number; replacement: INodeProto[] }[] = []
  const added: ITensorProto[] = []
  const fresh = freshNames(graph)
  for (const [at, delta] of nodes.entries()) {
    const match = matchCorrection(delta, ix)
    if (!match) continue
    const { x, inF, outF, eor, sigma } = match
    const R = eor.length
    if (inF.cols !== R || outF.rows !== R || sigma.length !== R) continue
    const ranks = ranksByExpert(eor, T)
    if (typeof ranks === 'string') return { unavailable: `${delta.output?.[0]}: ${ranks}` }
    const r = R / T
    const dIn = inF.rows
    const dOut = outF.cols
    const { ug, vg } = factorsByExpert(inF, outF, sigma, ranks)
    const p = fresh(`grouped/${delta.output?.[0] ?? at}`)
    const name = (s: string) => `${p}/${s}`
    added.push(
      floatTensor(name('u'), ug, [T, dIn, r]),
      floatTensor(name('v'), vg, [T, r, dOut]),
      int64Tensor(name('groups'), [T, -1, dIn], [3]),
      int64Tensor(name('d_out'), [dOut], [1]),
    )
    const y = delta.output?.[0] ?? ''
    plans.push({
      at,
      replacement: [
        node('Reshape', [x, name('groups')], name('x')), // [T, P·S, d_in]: rows are expert-major
        node('MatMul', [name('x'), name('u')], name('xu')), // [T, P·S, r]
        node('MatMul', [name('xu'), name('v')], name('delta')), // [T, P·S, d_out]
        // x's leading dims ([B, S] or [B·S]) + d_out: the shape the ungrouped correction had.
        node('Shape', [x], name('x_shape')),
        node('Slice', [name('x_shape'), ZERO, MINUS_ONE], name('lead')),
        node('Concat', [name('lead'), name('d_out')], name('shape'), [
          { name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 },
        ]),
        node('Reshape', [name('delta'), name('shape')], y),
      ],
    })
  }
  if (plans.length === 0)
    return {
      unavailable:
        'no correction multiplies stacked per-expert factors (x·U ⊙ s(w))·Vᵀ with the batch leading',
    }
  const byAt = new Map(plans.map((pl) => [pl.at, pl.replacement]))
  graph.node = nodes.flatMap((n, i) => byAt.get(i) ?? [n])
  graph.initializer = [
    ...(graph.initializer ?? []),
    ...added,
    int64Tensor(ZERO, [0], [1]),
    int64Tensor(MINUS_ONE, [-1], [1]),
  ]
  // The per-row xu and xu ⊙ s(w) now feed nothing, nor do factors only dense uses read.
  pruneDeadNodes(graph)
  return { grouped: plans.length }
}

const ZERO = 'grouped/zero'
const MINUS_ONE = 'grouped/minus_one'

function node(
  opType: string,
  input: string[],
  output: string,
  attribute: INodeProto['attribute'] = [],
): INodeProto {
  return { opType, input, output: [output], name: `${output}/node`, attribute }
}

/** A name prefix not yet in the graph. */
function freshNames(graph: IGraphProto): (base: string) => string {
  const taken = new Set([
    ...(graph.initializer ?? []).map((t) => t.name ?? ''),
    ...(graph.node ?? []).flatMap((n) => n.output ?? []),
  ])
  return (base) => {
    let k = 0
    let name = base
    while ([...taken].some((t) => t.startsWith(`${name}/`))) name = `${base}_${++k}`
    taken.add(`${name}/`)
    return name
  }
}

/**
 * delta = MatMul(Mul(MatMul(x, inFactor), align(s)), outFactor), s = Mul(Gather(w, expert_of_rank), σ): its
 * parts, or undefined when `delta` is not such a correction (or its intermediates feed anything else).
 */
function matchCorrection(delta: INodeProto, ix: GraphIndex) {
  const { producer, inits } = ix
  if (delta.opType !== 'MatMul' || delta.input?.length !== 2) return undefined
  const [z = '', outName = ''] = delta.input
  const mul = producer.get(z)
  if (mul?.opType !== 'Mul' || mul.input?.length !== 2 || !soleReader(ix, z)) return undefined
  const [xu = '', aligned = ''] = mul.input
  const xuNode = producer.get(xu)
  if (xuNode?.opType !== 'MatMul' || !soleReader(ix, xu)) return undefined
  const [x = '', inName = ''] = xuNode.input ?? []
  const inF = factorOf(inName, producer, inits)
  const outF = factorOf(outName, producer, inits)
  const s = rankWeightsOf(aligned, producer, inits)
  if (!inF || !outF || !s) return undefined
  return { x, inF, outF, ...s }
}

/** A factor matrix: a float initializer, through a Cast to float and a 2-D Transpose (decode-graph.ts too). */
export function factorOf(
  name: string,
  producer: Map<string, INodeProto>,
  inits: Map<string, ITensorProto>,
): Matrix | undefined {
  const n = producer.get(name)
  if (n?.opType === 'Transpose') {
    const perm = n.attribute?.find((a) => a.name === 'perm')?.ints?.map(toNumber)
    if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return undefined
    const m = factorOf(n.input?.[0] ?? '', producer, inits)
    return m && transpose(m)
  }
  if (n?.opType === 'Cast') {
    const to = n.attribute?.find((a) => a.name === 'to')?.i
    if (toNumber(to) !== TensorDataType.FLOAT) return undefined
    const t = inits.get(n.input?.[0] ?? '')
    return t && matrixOf(t)
  }
  if (n) return undefined
  const t = inits.get(name)
  return t && matrixOf(t)
}

/** A 2-D initializer's values as float32 (float, float16 and int8 widen exactly). */
function matrixOf(t: ITensorProto): Matrix | undefined {
  const dims = (t.dims ?? []).map(toNumber)
  if (dims.length !== 2 || t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    return undefined
  const [rows = 0, cols = 0] = dims
  const values = floatValues(t, rows * cols)
  return values && { values, rows, cols }
}

/** float16 bits → float32, all 65,536 of them: decoding the factors is a table lookup per value. */
let halfTable: Float32Array | undefined

function halves(bits: Uint16Array): Float32Array {
  halfTable ??= decodeFloat16(Uint16Array.from({ length: 65536 }, (_, i) => i))
  const table = halfTable
  const out = new Float32Array(bits.length)
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i] as number] as number
  return out
}

/** A copy of a tensor's raw bytes in a buffer of its own (protobuf's views need not be aligned). */
function aligned(raw: Uint8Array): ArrayBuffer {
  return new Uint8Array(raw).buffer
}

/** A float, float16 or int8 tensor's `count` values as float32, or undefined for another type or size. */
export function floatValues(t: ITensorProto, count: number): Float32Array | undefined {
  const raw = t.rawData
  const hasRaw = raw !== null && raw !== undefined && raw.byteLength > 0
  if (t.dataType === TensorDataType.INT8) return int8TensorValues(t, count)
  if (t.dataType === TensorDataType.FLOAT16) {
    // ONNX raw data is little-endian, as the typed arrays are on every host onnxruntime-node runs on.
    if (hasRaw)
      return raw.byteLength === count * 2 ? halves(new Uint16Array(aligned(raw))) : undefined
    const ints = t.int32Data ?? []
    return ints.length === count ? halves(Uint16Array.from(ints)) : undefined
  }
  if (t.dataType !== TensorDataType.FLOAT) return undefined
  if (hasRaw) return raw.byteLength === count * 4 ? new Float32Array(aligned(raw)) : undefined
  const data = t.floatData ?? []
  return data.length === count ? Float32Array.from(data) : undefined
}

/**
 * Stacked factors regrouped by expert, σ folded into the input side: U_g [T, d_in, r] with U_g[e] = U[:, ranks of e]
 * · diag(σ[ranks of e]), and V_g [T, r, d_out] with V_g[e] = V[ranks of e, :] (the merged decode graph's merge takes
 * the same, merged-decode-graph.ts).
 */
export function factorsByExpert(
  inF: Matrix,
  outF: Matrix,
  sigma: Float32Array,
  ranks: readonly (readonly number[])[],
): { ug: Float32Array; vg: Float32Array } {
  const T = ranks.length
  const R = inF.cols
  const r = (ranks[0] ?? []).length
  const dIn = inF.rows
  const dOut = outF.cols
  const ug = new Float32Array(T * dIn * r) // [T, d_in, r], σ folded in
  const vg = new Float32Array(T * r * dOut) // [T, r, d_out]
  for (let e = 0; e < T; e++)
    for (const [j, k] of (ranks[e] ?? []).entries()) {
      const sk = sigma[k] as number
      for (let i = 0; i < dIn; i++)
        ug[(e * dIn + i) * r + j] = (inF.values[i * R + k] as number) * sk
      vg.set(outF.values.subarray(k * dOut, (k + 1) * dOut), (e * r + j) * dOut)
    }
  return { ug, vg }
}

export function transpose(m: Matrix): Matrix {
  const out = new Float32Array(m.values.length)
  for (let i = 0; i < m.rows; i++)
    for (let j = 0; j < m.cols; j++) out[j * m.rows + i] = m.values[i * m.cols + j] as number
  return { values: out, rows: m.cols, cols: m.rows }
}

/**
 * s(w)'s expert of rank and σ, when `aligned` is s = Mul(Gather(w, expert_of_rank, axis 1), σ) broadcast to the
 * output with the batch on the leading axis: through Unsqueezes that leave axis 0 alone, Expand and Reshape (the
 * per-position repeat of a [batch·seq, d] output, corrections.ts, which is batch-major when its Unsqueeze keeps
 * axis 0). A layout with the batch elsewhere ([seq, batch, d]) does not match: its rows are not expert-major.
 */
export function rankWeightsOf(
  aligned: string,
  producer: Map<string, INodeProto>,
  inits: Map<string, ITensorProto>,
): { eor: Int32Array; sigma: Float32Array } | undefined {
  let n = producer.get(aligned)
  for (let hops = 0; n && hops < 8; hops++) {
    if (n.opType === 'Unsqueeze') {
      const axes = inits.get(n.input?.[1] ?? '')
      const values = axes && intValues(axes)
      if (!values || values.includes(0)) return undefined
    } else if (n.opType === 'Mul') {
      const [g = '', sig = ''] = n.input ?? []
      const gather = producer.get(g)
      const axis = toNumber(gather?.attribute?.find((a) => a.name === 'axis')?.i)
      const eorT = inits.get(gather?.input?.[1] ?? '')
      const sigmaT = inits.get(sig)
      if (gather?.opType !== 'Gather' || axis !== 1 || !eorT || !sigmaT) return undefined
      const eor = intValues(eorT)
      const sigma = floatValues(
        sigmaT,
        (sigmaT.dims ?? []).map(toNumber).reduce((a, b) => a * b, 1),
      )
      if (!eor || !sigma || (eorT.dims ?? []).length !== 1 || (sigmaT.dims ?? []).length !== 1)
        return undefined
      return { eor, sigma }
    } else if (n.opType !== 'Expand' && n.opType !== 'Reshape') return undefined
    n = producer.get(n.input?.[0] ?? '')
  }
  return undefined
}

export function intValues(t: ITensorProto): Int32Array | undefined {
  const count = (t.dims ?? []).map(toNumber).reduce((a, b) => a * b, 1)
  if (t.dataType !== TensorDataType.INT64) return undefined
  const raw = t.rawData
  if (raw && raw.byteLength > 0) {
    if (raw.byteLength !== count * 8) return undefined
    return Int32Array.from(new BigInt64Array(aligned(raw)), (v) => Number(v))
  }
  const data = t.int64Data ?? []
  return data.length === count ? Int32Array.from(data, (v) => toNumber(v)) : undefined
}

/** Each expert's rank indices, in order, or why they cannot be grouped (every expert must own R / T of them). */
export function ranksByExpert(eor: ArrayLike<number>, T: number): number[][] | string {
  const ranks = Array.from({ length: T }, () => [] as number[])
  for (let k = 0; k < eor.length; k++) {
    const e = eor[k] as number
    if (!Number.isInteger(e) || e < 0 || e >= T)
      return `rank ${k} belongs to expert ${e}, not one of 0…${T - 1}`
    ranks[e]?.push(k)
  }
  const counts = ranks.map((r) => r.length)
  if (counts.some((c) => c !== counts[0]))
    return `the experts own different numbers of ranks (${counts.join(', ')}): a batched product needs the same`
  if (counts[0] === 0) return 'no expert owns a rank'
  return ranks
}
