/**
 * The merged decode graph (issue 14, speed): the decoder with every factored correction merged into the matrix it
 * corrects, the merged matrices fed as inputs. When every row of a decode pass applies the same mix (one sequence
 * alone, or a tenant's pinned mix), the engine runs this graph instead of the factored one: the pass then costs
 * what the shared model's does, and the merge is paid once per mix, not once per step.
 *
 * Why: the factored twin graph corrects each use of a matrix W per row,
 *   ΔY = (x·U ⊙ s(w))·F,  s(w) = w[expert_of_rank] ⊙ σ   // U: [d_in, R], F: [R, d_out], R = T·r
 * and at zoo/lm's size (d = 128, R = 240) those corrections hold more multiply-adds than the model itself, and add
 * three small ops per site (bench/RESULTS.md: the decode step is 1.7–2.3× the shared model's). For a fixed mix w
 * they are one matrix, W(w) = W + (U ⊙ s(w))·F, so a pass whose rows share w can run x·W(w) like a plain model.
 *
 * Two graphs come out:
 * - the decode graph, with each matched site's W read from a graph input `merged/…` ([d_in, d_out] as the base op
 *   reads it) and the correction's Add an Identity of the base product (the correction is pruned); vector
 *   corrections (biases, LayerNorms) still read the rows' `mix_weights`, so its controls are the factored graph's;
 * - the merge graph: `mix_weights` [1, T] → every merged matrix, W(w) = W + (P ⊙ s(w))·Q, with P, Q the site's
 *   factors in W's orientation (a Gemm with transB reads W transposed: P = Fᵀ, Q = Uᵀ). Sites that merge into the
 *   same matrix with the same factors (a tied embedding's lookup and LM head) share one input.
 *
 * A site matches when its correction is MatMul(Mul(xu, align(s)), F) with s = Gather(w, expert_of_rank) ⊙ σ
 * (grouped-likelihood-graph.ts's reading), xu = MatMul(x, U) or, for an embedding lookup, Gather(U's rows, ids);
 * the correction is added once to the base, and the base is MatMul(x, W), Gemm(x, W) (no transA, alpha 1) or
 * Gather(W, ids) with W a float32 initializer, through at most one Add (the folded bias) that nothing else reads.
 * Anything else keeps its factored correction in the merged graph (still exact, since the rows' mixes are fed).
 * @module
 */
import { TWIN_INPUTS, TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { floatTensor, int64Tensor, valueInfo } from '../onnx/graph-builder.ts'
import {
  type IGraphProto,
  type IModelProto,
  type INodeProto,
  type ITensorProto,
  onnx,
  TensorDataType,
  toNumber,
} from '../onnx/proto.ts'
import {
  freshNamer,
  type GraphIndex,
  indexGraph,
  soleReader,
  sortTopologically,
} from './graph-index.ts'
import {
  factorOf,
  factorsByExpert,
  type Matrix,
  ranksByExpert,
  rankWeightsOf,
  transpose,
} from './grouped-likelihood-graph.ts'
import { joinVectorDeltas } from './joined-vector-deltas.ts'
import { nodeReads, pruneDeadNodes } from './likelihood-graph.ts'

/** The merge graph's input: the one mix every merged matrix is for. */
export const MERGE_MIX = 'mix_weights'

export interface MergedMatrix {
  /** The decode graph's input (and the merge graph's output) it is fed as. */
  name: string
  dims: [number, number]
}

export type MergedDecodeGraph =
  | {
      /** The decode graph with merged matrices as inputs. */
      decode: Uint8Array
      /** `mix_weights` [1, T] → each merged matrix. */
      merge: Uint8Array
      matrices: MergedMatrix[]
      /** Corrections merged (sites sharing a matrix count once each). */
      sites: number
      /** Corrections left factored (they did not match). */
      factored: number
      /**
       * The graph reads the rows' `mix_weights` where it read the applied weights, and has no `expert_weights`
       * output: the router and the control handling are gone (exact for rows with an explicit mix, the only rows
       * the engine merges).
       */
      explicit: boolean
      /** Float32 bytes of one mix's merged matrices. */
      bytesPerMix: number
      /** Float32 bytes the merge session holds once open (each expert's whole correction, and the base matrices). */
      mergeBytes: number
    }
  | { unavailable: string }

/**
 * Makes every node that reads the applied weights read the `mix_weights` input instead and drops the applied-weights
 * output, so that the router, its gate and the control handling (masks, top_k, abstain) are pruned: a row with an
 * explicit mix applies exactly its `mix_weights` (build/twin-graph/expert-weights.ts passes them through), and the
 * engine merges only passes whose rows all have one. False, with the graph unchanged, when the graph is not laid
 * out so (no Identity to `expert_weights`, no `mix_weights` input, or a subgraph reads the applied weights).
 */
function readMixDirectly(graph: IGraphProto): boolean {
  const mix = TWIN_INPUTS.mixWeights.name
  const out = graph.node?.find((n) => n.output?.[0] === TWIN_OUTPUT_WEIGHTS)
  const w = out?.opType === 'Identity' ? out.input?.[0] : undefined
  if (!w || !graph.input?.some((i) => i.name === mix)) return false
  const readers = (graph.node ?? []).filter((n) => n !== out && nodeReads(n).includes(w))
  if (readers.some((n) => !n.input?.includes(w))) return false
  for (const n of readers) n.input = (n.input ?? []).map((i) => (i === w ? mix : i))
  graph.output = (graph.output ?? []).filter((o) => o.name !== TWIN_OUTPUT_WEIGHTS)
  return true
}

/** One corrected use of a matrix: W(w) = W + (P ⊙ s(w))·Q in the orientation `base` reads W. */
interface Site {
  base: INodeProto
  /** base.input[slot] is W. */
  slot: number
  /** Add(…, Δ): becomes Identity(keep). */
  add: INodeProto
  keep: string
  wName: string
  W: Matrix
  P: Matrix
  Q: Matrix
  eor: Int32Array
  sigma: Float32Array
}

/** The merged decode graph and its merge graph from the decoder as served, or why there is none. */
export function mergedDecodeGraph(served: Uint8Array, experts: number): MergedDecodeGraph {
  try {
    const decoded = onnx.ModelProto.decode(served)
    const graph = decoded.graph
    if (!graph) return { unavailable: 'the model has no graph' }
    const ix = indexGraph(graph)
    const sites: Site[] = []
    let factored = 0
    for (const n of graph.node ?? []) {
      const site = matchSite(n, ix)
      if (site === 'not a correction') continue
      if (typeof site === 'string') factored++
      else sites.push(site)
    }
    if (sites.length === 0)
      return { unavailable: 'no factored correction merges into a matrix initializer' }
    for (const s of sites) {
      const ranks = ranksByExpert(s.eor, experts)
      if (typeof ranks === 'string') return { unavailable: `${s.wName}: ${ranks}` }
    }

    // One input per distinct merged matrix.
    const fresh = freshNamer(graph)
    const groups: { name: string; site: Site }[] = []
    for (const s of sites) {
      let g = groups.find((g) => sameMerge(g.site, s))
      if (!g) {
        g = { name: fresh(`merged/${s.wName}`), site: s }
        groups.push(g)
        graph.input = [...(graph.input ?? []), valueInfo(g.name, 'float', [s.W.rows, s.W.cols])]
      }
      if (s.base.input) s.base.input[s.slot] = g.name
      s.add.opType = 'Identity'
      s.add.input = [s.keep]
    }
    joinVectorDeltas(graph)
    const explicit = readMixDirectly(graph)
    sortTopologically(graph)
    pruneDeadNodes(graph)
    const decode = onnx.ModelProto.encode(decoded).finish()
    const merge = mergeGraph(decoded, groups, experts)
    const size = (m: Matrix) => m.rows * m.cols * 4
    return {
      decode,
      merge,
      matrices: groups.map((g) => ({ name: g.name, dims: [g.site.W.rows, g.site.W.cols] })),
      sites: sites.length,
      factored,
      explicit,
      bytesPerMix: groups.reduce((a, g) => a + size(g.site.W), 0),
      mergeBytes: groups.reduce((a, { site: s }) => a + (experts + 1) * size(s.W), 0),
    }
  } catch (err) {
    // A graph the patterns misread must not fail the load: the engine then decodes factored only.
    return {
      unavailable: `the rewrite failed: ${err instanceof Error ? err.message : String(err)}`,
    }
  }
}

/**
 * The site whose correction `delta` computes; 'not a correction' when delta is no factored product, or why this
 * correction does not merge (it then stays factored).
 */
function matchSite(delta: INodeProto, ix: GraphIndex): Site | string {
  const none = 'not a correction'
  if (delta.opType !== 'MatMul' || delta.input?.length !== 2) return none
  const [z = '', fName = ''] = delta.input
  const mul = ix.producer.get(z)
  if (mul?.opType !== 'Mul' || mul.input?.length !== 2 || soleReader(ix, z) !== delta) return none
  for (const slot of [0, 1]) {
    const xuName = mul.input[slot] ?? ''
    const scale = rankWeightsOf(mul.input[1 - slot] ?? '', ix.producer, ix.inits)
    const xu = ix.producer.get(xuName)
    if (!scale || !xu || soleReader(ix, xuName) !== mul) continue
    const F = factorOf(fName, ix.producer, ix.inits)
    if (!F) return 'its output factor is not an initializer'
    const out = delta.output?.[0] ?? ''
    const add = soleReader(ix, out)
    if (add?.opType !== 'Add' || add.input?.length !== 2) return 'it is not added once to a product'
    const keep = add.input[0] === out ? (add.input[1] ?? '') : (add.input[0] ?? '')
    const found = xu.opType === 'Gather' ? lookupBase(xu, keep, ix) : productBase(xu, keep, add, ix)
    if (typeof found === 'string') return found
    const U = factorOf(xu.input?.[xu.opType === 'Gather' ? 0 : 1] ?? '', ix.producer, ix.inits)
    if (!U) return 'its input factor is not an initializer'
    const [P, Q] = found.transposed ? [transpose(F), transpose(U)] : [U, F]
    const R = scale.eor.length
    if (
      P.rows !== found.W.rows ||
      Q.cols !== found.W.cols ||
      P.cols !== R ||
      Q.rows !== R ||
      scale.sigma.length !== R
    )
      return `its factors do not fit ${found.wName}`
    return { ...found, add, keep, P, Q, ...scale }
  }
  return none
}

type Base = { base: INodeProto; slot: number; wName: string; W: Matrix; transposed: boolean }

/** An embedding lookup's base: Gather(W, ids) on the lookup's own ids. */
function lookupBase(xu: INodeProto, keep: string, ix: GraphIndex): Base | string {
  const base = ix.producer.get(keep)
  const ids = xu.input?.[1]
  if (
    base?.opType !== 'Gather' ||
    base.input?.[1] !== ids ||
    axisOf(base) !== 0 ||
    axisOf(xu) !== 0
  )
    return 'the lookup is not added to a Gather of the same ids'
  const wName = base.input?.[0] ?? ''
  const W = float32Matrix(wName, ix)
  return W ? { base, slot: 0, wName, W, transposed: false } : `${wName} is not a float32 matrix`
}

/**
 * A product's base: MatMul(x, W) or Gemm(x, W) on the correction's own x, the Add's other input or one input of
 * an Add (the bias) that only the correction's Add reads.
 */
function productBase(xu: INodeProto, keep: string, add: INodeProto, ix: GraphIndex): Base | string {
  const x = xu.input?.[0]
  const direct = ix.producer.get(keep)
  const candidates = [direct]
  if (direct?.opType === 'Add' && soleReader(ix, keep) === add)
    candidates.push(...(direct.input ?? []).map((i) => ix.producer.get(i)))
  for (const base of candidates) {
    if (!base || base.input?.[0] !== x) continue
    const out = base.output?.[0] ?? ''
    if (valueReader(ix, out) !== (base === direct ? add : direct)) continue
    const wName = base.input?.[1] ?? ''
    const W = float32Matrix(wName, ix)
    if (!W) continue
    if (base.opType === 'MatMul') return { base, slot: 1, wName, W, transposed: false }
    if (base.opType === 'Gemm') {
      const attr = (n: string) => base.attribute?.find((a) => a.name === n)
      if (toNumber(attr('transA')?.i ?? 0) !== 0 || (attr('alpha')?.f ?? 1) !== 1) continue
      return { base, slot: 1, wName, W, transposed: toNumber(attr('transB')?.i ?? 0) === 1 }
    }
  }
  return 'no MatMul or Gemm of the same input with a matrix initializer is its base'
}

/**
 * The one node that reads `name`'s values, Shape readers aside (the builder's row alignment reads a product's
 * shape, which the merge leaves as it was).
 */
function valueReader(ix: GraphIndex, name: string): INodeProto | undefined {
  const r = (ix.readers.get(name) ?? []).filter((n) => n.opType !== 'Shape')
  return r.length === 1 && !ix.outputs.has(name) ? r[0] : undefined
}

function axisOf(n: INodeProto): number {
  return toNumber(n.attribute?.find((a) => a.name === 'axis')?.i ?? 0)
}

/** A 2-D float32 initializer read directly (a narrower type would widen in memory for every mix). */
function float32Matrix(name: string, ix: GraphIndex): Matrix | undefined {
  if (ix.producer.has(name)) return undefined
  const t = ix.inits.get(name)
  if (t?.dataType !== TensorDataType.FLOAT || (t.dims ?? []).length !== 2) return undefined
  return factorOf(name, ix.producer, ix.inits)
}

/** Whether two sites merge into the same matrix: the same W and equal factors and scales. */
function sameMerge(a: Site, b: Site): boolean {
  const eq = (x: ArrayLike<number>, y: ArrayLike<number>) =>
    x.length === y.length && Array.prototype.every.call(x, (v: number, i: number) => v === y[i])
  return (
    a.wName === b.wName &&
    a.P.rows === b.P.rows &&
    a.Q.cols === b.Q.cols &&
    eq(a.eor, b.eor) &&
    eq(a.sigma, b.sigma) &&
    eq(a.P.values, b.P.values) &&
    eq(a.Q.values, b.Q.values)
  )
}

/**
 * The merge graph: `mix_weights` [1, T] → for each group W(w) = W + Σ_t w_t·D_t, float32, with D_t = P_t·diag(σ_t)·Q_t
 * expert t's whole correction [d_in, d_out]. D = MatMul(P_g [T, d_in, r], Q_g [T, r, d_out]) has only
 * initializers for inputs, so onnxruntime's constant folding computes it once, when the session opens; a merge is
 * then one [1, T] × [T, d_in·d_out] product per matrix, memory-bound (~2 ms for zoo/lm's 20 matrices, where
 * multiplying the factors per merge took 9–13 ms), for T·d_in·d_out floats held instead of the factors.
 */
function mergeGraph(
  model: IModelProto,
  groups: readonly { name: string; site: Site }[],
  T: number,
): Uint8Array {
  const nodes: INodeProto[] = []
  const inits: ITensorProto[] = []
  const node = (opType: string, input: string[], output: string): void => {
    nodes.push({ opType, input, output: [output], name: `${output}/node` })
  }
  groups.forEach(({ name, site: s }, i) => {
    const p = `site${i}`
    const ranks = ranksByExpert(s.eor, T) as number[][]
    const r = (ranks[0] as number[]).length
    const dIn = s.P.rows
    const dOut = s.Q.cols
    const { ug: pg, vg: qg } = factorsByExpert(s.P, s.Q, s.sigma, ranks)
    inits.push(
      floatTensor(`${p}/p`, pg, [T, dIn, r]),
      floatTensor(`${p}/q`, qg, [T, r, dOut]),
      floatTensor(`${p}/w`, s.W.values, [dIn, dOut]),
      int64Tensor(`${p}/flat`, [T, dIn * dOut], [2]),
      int64Tensor(`${p}/dims`, [dIn, dOut], [2]),
    )
    node('MatMul', [`${p}/p`, `${p}/q`], `${p}/d`) // D [T, d_in, d_out]: folded at load
    node('Reshape', [`${p}/d`, `${p}/flat`], `${p}/d_flat`) // [T, d_in·d_out]
    node('MatMul', [MERGE_MIX, `${p}/d_flat`], `${p}/delta_flat`) // Σ_t w_t·D_t [1, d_in·d_out]
    node('Reshape', [`${p}/delta_flat`, `${p}/dims`], `${p}/delta`) // [d_in, d_out]
    node('Add', [`${p}/w`, `${p}/delta`], name)
  })
  const graph: IGraphProto = {
    name: 'merge',
    node: nodes,
    initializer: inits,
    input: [valueInfo(MERGE_MIX, 'float', [1, T])],
    output: groups.map(({ name, site: s }) => valueInfo(name, 'float', [s.W.rows, s.W.cols])),
  }
  return onnx.ModelProto.encode({
    irVersion: model.irVersion ?? 8,
    opsetImport: model.opsetImport?.filter((o) => !o.domain) ?? [{ domain: '', version: 17 }],
    producerName: 'twinserve merged-decode-graph',
    graph,
  }).finish()
}
