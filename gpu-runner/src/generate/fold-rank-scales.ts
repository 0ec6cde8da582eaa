/**
 * Folds each factored correction's σ into its output factor at load (issue 14, speed), so that every site's
 * per-row scale is the one Gather(weights, expert_of_rank) the sites share.
 *
 * The twin graph corrects a use of a factored matrix with
 *   ΔY = (xu ⊙ align(s))·F,  s = Gather(w, expert_of_rank) ⊙ σ   // s: [batch, R], F: [R, d_out]
 * (build/twin-graph/matrix-corrections.ts; xu = x·U, or U's rows for an embedding lookup). σ scales F's rows
 * alike for every batch row, so ΔY = (xu ⊙ align(g))·F', g = Gather(w, expert_of_rank), F' = diag(σ)·F: a float32
 * initializer built here from the stored factor (float16 and int8 widen exactly, as the grouped likelihood graph's
 * do). Each site's Mul by σ and its own broadcast of s go; the sites' g and its broadcasts are one tensor each
 * (onnxruntime's CSE merged the Gathers already, never the per-site Muls). The product is summed in another order
 * than the twin graph's: agreement is to float32 rounding (decode-graph.test.ts).
 *
 * A correction matches when F is a float32 factor initializer (through a Transpose), s is Mul(Gather(w,
 * expert_of_rank, axis 1), σ) with both tables initializers, broadcast by Unsqueeze, Expand and Reshape (the
 * builder's row alignment, corrections.ts); anything else (shared-basis or top-k-gather corrections) is left as is.
 * A factor the package stores narrower (float16, int8: behind a Cast) keeps its σ: F' would be float32, and on
 * zoo/lm (float16 factors) that took a load from 22 to 75 MiB (`npm run bench:load-memory`) for 7–8 % of a decode
 * pass (`npm run bench:decode-graph`, 2026-12-06). The decode graph never holds a factor wider than the package.
 * @module
 */
import { floatTensor } from '../onnx/graph-builder.ts'
import {
  type IGraphProto,
  type INodeProto,
  type ITensorProto,
  TensorDataType,
  toNumber,
} from '../onnx/proto.ts'
import { freshNamer, type GraphIndex, indexGraph, soleReader } from './graph-index.ts'
import { factorOf, floatValues, intValues } from './grouped-likelihood-graph.ts'

/** s = Mul(g, σ) as matched: the Gather node g and σ's values. */
interface RankScale {
  s: INodeProto
  g: INodeProto
  sigma: Float32Array
  sigmaName: string
}

/**
 * Rewrites a decoded decode graph in place (see the module comment); dead nodes are left for the caller to prune.
 * @returns how many corrections had σ folded into their output factor
 */
export function foldRankScales(graph: IGraphProto): number {
  const ix = indexGraph(graph)
  const fresh = freshNamer(graph)
  const added: INodeProto[] = []
  const addedInits: ITensorProto[] = []
  const canonical = new Map<string, string>() // node key → its output, for g and its broadcasts
  const scaledFactors = new Map<string, string>() // σ|F → F'
  const scaleOf = new Map<string, string>() // s → g's canonical output (for Shape readers)
  let folded = 0

  const cloned = (opType: string, input: string[], like: INodeProto): string => {
    const key = `${opType}|${input.join(',')}|${JSON.stringify(like.attribute ?? [])}`
    const hit = canonical.get(key)
    if (hit) return hit
    const out = fresh(`fold/${opType.toLowerCase()}`)
    added.push({
      opType,
      input,
      output: [out],
      name: `${out}/node`,
      attribute: like.attribute ?? [],
      ...(like.domain ? { domain: like.domain } : {}),
    })
    canonical.set(key, out)
    return out
  }

  for (const delta of graph.node ?? []) {
    if (delta.opType !== 'MatMul' || delta.input?.length !== 2) continue
    const [z = '', fName = ''] = delta.input
    const mul = ix.producer.get(z)
    if (mul?.opType !== 'Mul' || mul.input?.length !== 2 || soleReader(ix, z) !== delta) continue
    for (const slot of [0, 1]) {
      const match = alignedScale(ix, mul.input[slot] ?? '')
      if (!match) continue
      const { scale, chain } = match
      const R = scale.sigma.length
      const F = storedAsFloat32(fName, ix) ? factorOf(fName, ix.producer, ix.inits) : undefined
      if (!F || F.rows !== R) continue
      const fKey = `${scale.sigmaName}|${fName}`
      let scaled = scaledFactors.get(fKey)
      if (!scaled) {
        const values = new Float32Array(F.values.length) // [R, d_out] = diag(σ)·F
        for (let k = 0; k < R; k++) {
          const sk = scale.sigma[k] as number
          for (let j = 0; j < F.cols; j++)
            values[k * F.cols + j] = sk * (F.values[k * F.cols + j] as number)
        }
        scaled = fresh(`fold/${fName}/sigma`)
        addedInits.push(floatTensor(scaled, values, [R, F.cols]))
        scaledFactors.set(fKey, scaled)
      }
      // g: one per (weights, expert_of_rank), then the same broadcast the site gave s.
      let cur = cloned('Gather', [...(scale.g.input ?? [])], scale.g)
      scaleOf.set(scale.s.output?.[0] ?? '', cur)
      for (const c of chain) cur = cloned(c.opType ?? '', [cur, ...(c.input ?? []).slice(1)], c)
      mul.input[slot] = cur
      delta.input[1] = scaled
      folded++
      break
    }
  }
  // A row alignment reads s's shape too (corrections.ts, repeatPerRow): g's is the same, and s can then go.
  for (const n of graph.node ?? [])
    if (n.opType === 'Shape') {
      const g = scaleOf.get(n.input?.[0] ?? '')
      if (g && n.input) n.input[0] = g
    }
  graph.node = [...(graph.node ?? []), ...added]
  graph.initializer = [...(graph.initializer ?? []), ...addedInits]
  return folded
}

/**
 * The rank scale s that `aligned` broadcasts, and the broadcasting nodes from s outwards; undefined unless aligned
 * is s through Unsqueeze (not onto the rank axis), Expand and Reshape (the builder's row alignment, which keeps the
 * rank axis last).
 */
function alignedScale(
  ix: GraphIndex,
  aligned: string,
): { scale: RankScale; chain: INodeProto[] } | undefined {
  const chain: INodeProto[] = []
  let n = ix.producer.get(aligned)
  for (let hops = 0; n && hops < 8; hops++) {
    if (n.opType === 'Mul') {
      const scale = rankScale(ix, n)
      return scale && keepsRanksLast(ix, chain.reverse()) ? { scale, chain } : undefined
    }
    if (!['Unsqueeze', 'Expand', 'Reshape'].includes(n.opType ?? '')) return undefined
    chain.push(n)
    n = ix.producer.get(n.input?.[0] ?? '')
  }
  return undefined
}

/**
 * Whether the broadcast of s [batch, R] keeps R on the last axis: an Unsqueeze must not add the last axis (its rank
 * is known from s up to the first Expand or Reshape; after one, no Unsqueeze is taken). The Expand and Reshape are
 * the builder's per-position repeat, which ends in [n, R].
 */
function keepsRanksLast(ix: GraphIndex, chain: readonly INodeProto[]): boolean {
  let rank: number | undefined = 2
  for (const c of chain) {
    if (c.opType !== 'Unsqueeze') {
      rank = undefined
      continue
    }
    const axes = ix.inits.get(c.input?.[1] ?? '')
    const values = axes && intValues(axes)
    if (!values || rank === undefined) return false
    const out: number = rank + values.length
    if (values.some((a) => a < 0 || a >= out - 1)) return false
    rank = out
  }
  return true
}

/** s = Mul(Gather(w, expert_of_rank, axis 1), σ), σ and expert_of_rank 1-D initializers of one length. */
function rankScale(ix: GraphIndex, s: INodeProto): RankScale | undefined {
  if (s.input?.length !== 2) return undefined
  for (const slot of [0, 1]) {
    const g = ix.producer.get(s.input[slot] ?? '')
    const sigmaName = s.input[1 - slot] ?? ''
    const sigmaT = ix.inits.get(sigmaName)
    if (g?.opType !== 'Gather' || !sigmaT || ix.producer.has(sigmaName)) continue
    const axis = toNumber(g.attribute?.find((a) => a.name === 'axis')?.i)
    const eorT = ix.inits.get(g.input?.[1] ?? '')
    if (axis !== 1 || !eorT || (eorT.dims ?? []).length !== 1) continue
    if ((sigmaT.dims ?? []).length !== 1) continue
    const R = toNumber(sigmaT.dims?.[0])
    const eor = intValues(eorT)
    const sigma = floatValues(sigmaT, R)
    if (!eor || !sigma || eor.length !== R) continue
    return { s, g, sigma, sigmaName }
  }
  return undefined
}

/** Whether `name` is a float32 initializer, directly or through a Transpose (no Cast from a narrower type). */
function storedAsFloat32(name: string, ix: GraphIndex): boolean {
  const n = ix.producer.get(name)
  if (n?.opType === 'Transpose') return storedAsFloat32(n.input?.[0] ?? '', ix)
  if (n) return false
  return ix.inits.get(name)?.dataType === TensorDataType.FLOAT
}
