/**
 * All the vector deltas of a twin decoder in one product at load (issue 14, speed), with the shared biases and
 * LayerNorm scales folded in where that removes a pass over an activation.
 *
 * The twin graph corrects each exclusive vector p (biases, LayerNorm γ and β; build/twin-graph/vector-corrections.ts)
 * with its own w·Δp = MatMul(w [batch, T], Δp [T, d]) and Unsqueeze to [batch, 1, d]: 33 small MatMuls and 33
 * Unsqueezes per pass on zoo/lm. Here the deltas broadcast that way are one product and one Split:
 *   Gemm(w, [Δp₁ … Δpₙ] [T, Σd], C = [c₁ … cₙ]) → Unsqueeze [batch, 1, Σd] → Split into the n aligned pieces
 * where cᵢ is 0, or pᵢ's shared value when the piece can carry it:
 * - a bias whose correction is added after the shared `Add(b_s, x·W)`: the shared Add takes the piece instead of
 *   b_s and the correction's own Add goes, y = (x·W + (b_s + w·Δb)) + ΔY;
 * - a LayerNorm whose γ and β are both corrected: y = LN(x; γ_s, β_s) + LN(x; 1, 0) ⊙ w·Δγ + w·Δβ becomes
 *   LN(x; 1, 0) ⊙ (γ_s + w·Δγ) + (β_s + w·Δβ), so the shared LayerNorm and one Add go.
 * Both reorder a sum of the same terms: agreement is to float32 rounding (decode-graph.test.ts). Deltas broadcast
 * another way (the LM head's, repeated per position over [batch·seq, vocab]) are left as they are.
 * @module
 */
import { TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { floatTensor, int64Tensor, toAttribute } from '../onnx/graph-builder.ts'
import { type IGraphProto, type INodeProto, type ITensorProto, toNumber } from '../onnx/proto.ts'
import { freshNamer, type GraphIndex, indexGraph, soleReader } from './graph-index.ts'
import { floatValues, intValues } from './grouped-likelihood-graph.ts'

/** One vector delta: its MatMul, its Unsqueeze to [batch, 1, d], and what the joined product adds to it. */
interface Piece {
  matmul: INodeProto
  unsqueeze: INodeProto
  delta: Float32Array // [T, d]
  d: number
  /** The shared value the piece carries (biases and LayerNorm tables folded in), or none (zeros). */
  base?: Float32Array
}

export interface JoinedVectorDeltas {
  /** How many vector deltas the one product computes (0: the graph is unchanged). */
  joined: number
  /** How many shared biases and LayerNorms the pieces carry. */
  folded: number
}

/**
 * Rewrites a decoded decode graph in place (see the module comment); dead nodes are left for the caller to prune.
 */
export function joinVectorDeltas(graph: IGraphProto): JoinedVectorDeltas {
  const none = { joined: 0, folded: 0 }
  const ix = indexGraph(graph)
  const weightsOut = ix.producer.get(TWIN_OUTPUT_WEIGHTS)
  const w = weightsOut?.opType === 'Identity' ? (weightsOut.input?.[0] ?? '') : ''
  if (!w) return none
  const pieces = new Map<string, Piece>() // aligned name → piece
  let T = 0
  for (const n of graph.node ?? []) {
    if (n.opType !== 'MatMul' || n.input?.[0] !== w) continue
    const dName = n.input[1] ?? ''
    const dT = ix.inits.get(dName)
    const dims = (dT?.dims ?? []).map(toNumber)
    if (!dT || ix.producer.has(dName) || dims.length !== 2) continue
    const [t = 0, d = 0] = dims
    if (T !== 0 && t !== T) continue
    const delta = floatValues(dT, t * d)
    const unsqueeze = soleReader(ix, n.output?.[0] ?? '')
    if (!delta || unsqueeze?.opType !== 'Unsqueeze' || !unsqueezesAxis1(ix, unsqueeze)) continue
    T = t
    pieces.set(unsqueeze.output?.[0] ?? '', { matmul: n, unsqueeze, delta, d })
  }
  if (pieces.size < 2) return none
  const fresh = freshNamer(graph)
  const dropped = new Set<INodeProto>()
  const added: INodeProto[] = []
  let folded = 0
  for (const n of graph.node ?? [])
    if (n.opType === 'LayerNormalization' && foldLayerNorm(ix, n, pieces, dropped, added, fresh))
      folded++
  for (const n of graph.node ?? [])
    if (n.opType === 'Add' && !dropped.has(n) && foldBias(ix, n, pieces, dropped)) folded++

  const all = [...pieces.values()]
  const total = all.reduce((a, p) => a + p.d, 0)
  const joinedDelta = new Float32Array(T * total) // [T, Σd]
  const base = new Float32Array(total) // [Σd]
  let at = 0
  for (const p of all) {
    for (let t = 0; t < T; t++)
      joinedDelta.set(p.delta.subarray(t * p.d, (t + 1) * p.d), t * total + at)
    if (p.base) base.set(p.base, at)
    at += p.d
  }
  const name = fresh('joined/vector_deltas')
  const inits: ITensorProto[] = [
    floatTensor(`${name}/delta`, joinedDelta, [T, total]),
    int64Tensor(`${name}/axis1`, [1], [1]),
    int64Tensor(
      `${name}/sizes`,
      all.map((p) => p.d),
      [all.length],
    ),
  ]
  const product =
    folded > 0
      ? node('Gemm', [w, `${name}/delta`, `${name}/base`], `${name}/wd`)
      : node('MatMul', [w, `${name}/delta`], `${name}/wd`) // [batch, Σd]
  if (folded > 0) inits.push(floatTensor(`${name}/base`, base, [total]))
  const split: INodeProto = {
    ...node('Split', [`${name}/aligned`, `${name}/sizes`], ''),
    output: all.map((p) => p.unsqueeze.output?.[0] ?? ''),
    attribute: [toAttribute('axis', 2)],
  }
  added.push(
    product,
    node('Unsqueeze', [`${name}/wd`, `${name}/axis1`], `${name}/aligned`), // [batch, 1, Σd]
    split,
  )
  for (const p of all) dropped.add(p.matmul).add(p.unsqueeze)
  graph.node = [...(graph.node ?? []).filter((n) => !dropped.has(n)), ...added]
  graph.initializer = [...(graph.initializer ?? []), ...inits]
  return { joined: all.length, folded }
}

function node(opType: string, input: string[], output: string): INodeProto {
  return { opType, input, output: [output], name: `${output || input[0]}/${opType}` }
}

/** Unsqueeze(x, [1]) of a [batch, d] x: [batch, 1, d]. */
function unsqueezesAxis1(ix: GraphIndex, n: INodeProto): boolean {
  const axes = ix.inits.get(n.input?.[1] ?? '')
  const values = axes && intValues(axes)
  return values?.length === 1 && values[0] === 1
}

/** A 1-D float initializer of `d` values, not computed by any node. */
function vectorInit(ix: GraphIndex, name: string, d: number): Float32Array | undefined {
  const t = ix.inits.get(name)
  if (!t || ix.producer.has(name) || (t.dims ?? []).length !== 1 || toNumber(t.dims?.[0]) !== d)
    return undefined
  return floatValues(t, d)
}

/** The Adds that sum terms into `from`, each reading the last one's output at slot 0 and read by nothing else. */
function addChain(ix: GraphIndex, from: string): INodeProto[] {
  const chain: INodeProto[] = []
  let cur = from
  for (let hops = 0; hops < 16; hops++) {
    const next = soleReader(ix, cur)
    if (next?.opType !== 'Add' || next.input?.length !== 2 || next.input[0] !== cur) break
    chain.push(next)
    cur = next.output?.[0] ?? ''
  }
  return chain
}

/**
 * y = LN(x; γ_s, β_s) + LN(x; 1, 0) ⊙ γ-piece + β-piece (+ other terms), summed by an Add chain: rewritten to
 * LN(x; 1, 0) ⊙ γ-piece + β-piece (+ the others), the pieces carrying γ_s and β_s.
 */
function foldLayerNorm(
  ix: GraphIndex,
  ln: INodeProto,
  pieces: Map<string, Piece>,
  dropped: Set<INodeProto>,
  added: INodeProto[],
  fresh: (base: string) => string,
): boolean {
  const [x = '', gammaName = '', betaName = ''] = ln.input ?? []
  const chain = addChain(ix, ln.output?.[0] ?? '')
  if (chain.length < 2 || (ln.output ?? []).length !== 1) return false
  const terms = chain.map((a) => a.input?.[1] ?? '')
  // The γ term: Mul(LN(x; ones), γ-piece), read only here.
  let gammaAt = -1
  let gammaPiece: Piece | undefined
  terms.forEach((t, k) => {
    const mul = ix.producer.get(t)
    if (gammaPiece || mul?.opType !== 'Mul' || soleReader(ix, t) !== chain[k]) return
    const [a = '', b = ''] = mul.input ?? []
    const [normName, pieceName] = pieces.has(b) ? [a, b] : [b, a]
    const norm = ix.producer.get(normName)
    const piece = pieces.get(pieceName)
    if (!piece || piece.base || soleReader(ix, pieceName) !== mul) return
    if (!isUnitNorm(ix, norm, ln, x, piece.d)) return
    gammaAt = k
    gammaPiece = piece
  })
  if (!gammaPiece) return false
  const d = gammaPiece.d
  const betaAt = terms.findIndex((t, k) => {
    const p = pieces.get(t)
    return k !== gammaAt && p?.d === d && !p.base && soleReader(ix, t) === chain[k]
  })
  const betaPiece = pieces.get(terms[betaAt] ?? '')
  const gamma = vectorInit(ix, gammaName, d)
  const beta = vectorInit(ix, betaName, d)
  if (!betaPiece || !gamma || !beta) return false
  gammaPiece.base = gamma
  betaPiece.base = beta
  // The γ term first, then the other terms in their order: one Add fewer, and no shared LayerNorm.
  const rest = terms.filter((_, k) => k !== gammaAt)
  let acc = terms[gammaAt] ?? ''
  const y = chain[chain.length - 1]?.output?.[0] ?? ''
  rest.forEach((t, k) => {
    const out = k === rest.length - 1 ? y : fresh(`${y}/folded`)
    added.push({ opType: 'Add', input: [acc, t], output: [out], name: `${out}/Add` })
    acc = out
  })
  dropped.add(ln)
  for (const a of chain) dropped.add(a)
  return true
}

/** norm = LayerNormalization(x, ones[d]) with no bias and the shared LayerNorm's axis and epsilon. */
function isUnitNorm(
  ix: GraphIndex,
  norm: INodeProto | undefined,
  ln: INodeProto,
  x: string,
  d: number,
): boolean {
  if (norm?.opType !== 'LayerNormalization' || norm.input?.[0] !== x || norm.input[2]) return false
  const ones = vectorInit(ix, norm.input[1] ?? '', d)
  if (!ones?.every((v) => v === 1)) return false
  const attr = (n: INodeProto, a: string) =>
    JSON.stringify(n.attribute?.find((t) => t.name === a) ?? null)
  return ['axis', 'epsilon'].every((a) => attr(norm, a) === attr(ln, a))
}

/**
 * y = Add(… Add(Add(b_s, x·W), t₁) …, piece) with b_s the piece's shared bias: the shared Add takes the piece
 * (carrying b_s) and the piece's own Add goes.
 */
function foldBias(
  ix: GraphIndex,
  last: INodeProto,
  pieces: Map<string, Piece>,
  dropped: Set<INodeProto>,
): boolean {
  const [prev = '', pieceName = ''] = last.input ?? []
  const piece = pieces.get(pieceName)
  if (!piece || piece.base || soleReader(ix, pieceName) !== last) return false
  // Back along slot 0 of the Adds to the shared one, Add(b_s, x·W).
  let cur = prev
  for (let hops = 0; hops < 16; hops++) {
    const n = ix.producer.get(cur)
    if (n?.opType !== 'Add' || dropped.has(n) || soleReader(ix, cur) === undefined) return false
    const slot = [0, 1].find((k) => vectorInit(ix, n.input?.[k] ?? '', piece.d))
    // The Add that made `prev` makes y from here on.
    const before = ix.producer.get(prev)
    if (slot !== undefined && n.input && before?.output) {
      piece.base = vectorInit(ix, n.input[slot] ?? '', piece.d)
      n.input[slot] = pieceName
      before.output[0] = last.output?.[0] ?? ''
      dropped.add(last)
      return true
    }
    cur = n.input?.[0] ?? ''
  }
  return false
}
