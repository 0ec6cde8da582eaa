/**
 * The twin-graph rewrite: turns the shared model (base graph, shared values in its initializers) into one graph
 * that routes, merges and infers per example.
 *
 * For every use of an exclusive matrix W (stored [rows, cols], factors W_t − W_s ≈ U_t·diag(σ_t)·V_tᵀ stacked
 * over experts into U [rows, R], Vᵀ [R, cols]) the node's output becomes
 *   Y = Y_shared + ((X·U) ⊙ s(w))·Vᵀ,  s(w) = Gather(w, expert_of_rank) ⊙ σ   // s: [batch, R]
 * (with the roles of U and Vᵀ swapped when the node uses Wᵀ), and for every use of an exclusive vector p the
 * node's output gets the term its op implies for p_s + w·Δp: `+ w·Δp` for Add and LayerNormalization's bias,
 * `x ⊙ (w·Δp)` for Mul, `LN(x; 1, 0) ⊙ (w·Δγ)` for LayerNormalization's scale, `β·(w·Δc)` for Gemm's C.
 * Every term is added after the untouched shared node, so all-zero weights give the shared model bit for bit.
 * The per-example [batch, K] terms are broadcast to the node's output: unsqueezed for [batch, …, d], or
 * repeated per row when an exporter flattened [batch, seq, d] to [batch·seq, d] before a Gemm.
 *
 * The router reads the shared model's value of `feature`. When that tensor depends on a rewritten node, the
 * nodes that compute it are copied under `router/` names so that the router sees shared-model features (as
 * Twin-Merging's router does) and the graph stays acyclic. In the twin graph the router's nodes run inside an
 * `If`, only for batches where some row uses the router (router-gate.ts): explicit mixes, `shared` rows and the
 * materialised path do not pay for a router pass (with the default feature, a whole pass of the shared model).
 * With `topkGather: k`, each row applies only its k largest weights and every matrix gathers those experts'
 * factors per row instead of multiplying by all of them (topk-gather.ts).
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { AppError, TWIN_FACTOR_SUFFIXES, TWIN_INPUTS, TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import type { MatrixFactors, VectorFactors } from '../../factors/exclusive-factors.ts'
import { float16Tensor } from '../../onnx/float16.ts'
import { type Dim, valueInfo } from '../../onnx/graph-builder.ts'
import type { IModelProto, INodeProto, ModelProto } from '../../onnx/proto.ts'
import { onnx } from '../../onnx/proto.ts'
import { GraphEditor } from '../graph/graph-editor.ts'
import { defaultOpset, Ops } from '../graph/ops.ts'
import {
  consumersOf,
  floatAttr,
  intAttr,
  type MatrixUse,
  type TensorSite,
} from '../graph/weight-sites.ts'
import { gateRouter } from '../router/router-gate.ts'
import { emitTopK, gatherMatrix, padExpertMajor } from './topk-gather.ts'

/** How a tensor's leading axis relates to the batch (from probing the model at two batch sizes). */
export type RowLayout = { rank: number; mode: 'lead' } | { rank: 2; mode: 'flat' }

/** Emits a router: from a [batch, d] feature tensor to a [batch, T] tensor of probabilities. */
export type RouterEmitter = (ed: GraphEditor, ops: Ops, feature: string) => string

export interface TwinRewriteOptions {
  /** The shared model: the base graph with θ_s in its initializers. Not mutated. */
  model: IModelProto
  sites: ReadonlyMap<string, TensorSite>
  matrices: readonly MatrixFactors[]
  vectors: readonly VectorFactors[]
  /** Number of experts T. */
  experts: number
  /** Layout of every rewritten node's first output, by tensor name. */
  layouts: ReadonlyMap<string, RowLayout>
  /** Router input: a tensor of the base graph and its layout (rank > 2 is mean-pooled over the middle axes). */
  feature: { tensor: string; layout: RowLayout }
  router: RouterEmitter
  /**
   * 'inputs': the twin contract (mix_weights / use_router / expert_mask / top_k in, expert_weights out).
   * 'router': a plain graph for a variant, the router's dense weights applied, the base inputs/outputs only.
   */
  controls: 'inputs' | 'router'
  batchDim: Dim
  /**
   * Storage type of the U and Vᵀ factors. `float16` halves their bytes: they are stored as FLOAT16 initializers
   * under the convention names and Cast to float32 in the graph (onnxruntime folds the Cast of a constant when
   * it creates the session, so serving computes in float32 as before). Default float32.
   */
  factorDtype?: 'float32' | 'float16'
  /**
   * Top-k gather (controls 'inputs' only): each row applies at most this many experts, those with the largest
   * |weight| (router rows: top_k is capped at it before renormalising), and each matrix gathers just their
   * factors per row: the FLOPs of rank k·r instead of T·r. Factors are stored expert-major, padded to the
   * tensor's largest per-expert rank with zero singular values (R = T·r). Default: dense, every expert applied.
   */
  topkGather?: number
}

function cloneModel(model: IModelProto): ModelProto {
  return onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish())
}

/** Nodes (indices) that `tensor` depends on, in graph order. */
function ancestors(nodes: readonly INodeProto[], tensor: string): number[] {
  const producer = new Map<string, number>()
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) producer.set(o, i)
  })
  const seen = new Set<number>()
  const stack = [tensor]
  while (stack.length > 0) {
    const t = stack.pop() as string
    const p = producer.get(t)
    if (p === undefined || seen.has(p)) continue
    seen.add(p)
    for (const x of nodes[p]?.input ?? []) if (x) stack.push(x)
  }
  return [...seen].sort((a, b) => a - b)
}

/**
 * The node whose output receives a matrix use's correction. Usually the MatMul/Gemm itself; but when a MatMul's
 * only consumer is an `Add` of a constant (the bias of a Linear layer), after that Add: onnxruntime fuses
 * MatMul + bias Add into one Gemm that accumulates the bias inside its K loop, so inserting the correction
 * between them would change the shared computation's rounding. Past the Add, zero weights stay bit-exact.
 */
export function correctionTarget(
  nodes: readonly INodeProto[],
  consumers: ReadonlyMap<string, readonly { node: number; slot: number }[]>,
  constants: ReadonlySet<string>,
  graphOutputs: ReadonlySet<string>,
  use: { node: number; op: string },
): number {
  if (use.op !== 'MatMul') return use.node
  const y = nodes[use.node]?.output?.[0] ?? ''
  const next = consumers.get(y) ?? []
  const only = next[0]
  if (next.length !== 1 || !only || graphOutputs.has(y)) return use.node
  const add = nodes[only.node]
  if (add?.opType !== 'Add' || (add.input ?? []).length !== 2) return use.node
  const other = add.input?.[1 - only.slot] ?? ''
  return constants.has(other) ? only.node : use.node
}

/** Tensors whose layout (batch alignment) the rewrite needs: the outputs of every node that gets a correction. */
export function correctedOutputs(
  model: IModelProto,
  sites: ReadonlyMap<string, TensorSite>,
  tensors: readonly { name: string }[],
): string[] {
  const nodes = model.graph?.node ?? []
  const targets = correctionTargets(model, sites, tensors)
  return [...new Set([...targets.values()].flat())].map((i) => nodes[i]?.output?.[0] ?? '')
}

/** For each (tensor, use index): the node whose output gets the correction. */
function correctionTargets(
  model: IModelProto,
  sites: ReadonlyMap<string, TensorSite>,
  tensors: readonly { name: string }[],
): Map<string, number[]> {
  const graph = model.graph ?? {}
  const nodes = graph.node ?? []
  const consumers = consumersOf(graph)
  const constants = new Set((graph.initializer ?? []).map((t) => t.name ?? ''))
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''))
  const out = new Map<string, number[]>()
  for (const { name } of tensors) {
    const site = sites.get(name)
    if (!site || site.kind === 'unsupported') continue
    out.set(
      name,
      site.uses.map((u) => correctionTarget(nodes, consumers, constants, outputs, u)),
    )
  }
  return out
}

export function rewriteTwinGraph(opts: TwinRewriteOptions): ModelProto {
  const model = cloneModel(opts.model)
  const graph = model.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'the shared model has no graph')
  const ed = new GraphEditor(graph)
  const ops = new Ops(ed, defaultOpset(model))
  const T = opts.experts
  const orig = [...(graph.node ?? [])]

  // Which nodes get a correction, and the factors per tensor.
  const siteOf = (name: string, kind: 'matrix' | 'vector') => {
    const s = opts.sites.get(name)
    if (!s)
      throw new AppError(
        'INVALID_MODEL',
        `tensor '${name}' is not an initializer of the base graph`,
      )
    if (s.kind !== kind)
      throw new AppError('INVALID_MODEL', `tensor '${name}' is not a ${kind} site`)
    return s
  }
  for (const m of opts.matrices) siteOf(m.name, 'matrix')
  for (const v of opts.vectors) siteOf(v.name, 'vector')
  const targets = correctionTargets(opts.model, opts.sites, [...opts.matrices, ...opts.vectors])
  const siteNodes = new Set([...targets.values()].flat())

  const K = opts.controls === 'inputs' ? opts.topkGather : undefined
  if (K !== undefined && (!Number.isInteger(K) || K < 1 || K >= T))
    throw new AppError(
      'INVALID_REQUEST',
      `exclusive.topk_gather must be a whole number below the number of experts (${T}), got ${K}`,
    )

  // 1. Router input from the shared model: copy the feature's ancestors when any of them gets rewritten.
  const routerStart = (graph.node ?? []).length
  let feature = opts.feature.tensor
  const up = ancestors(orig, feature)
  if (up.some((i) => siteNodes.has(i))) {
    const renamed = new Map<string, string>()
    for (const i of up)
      for (const o of orig[i]?.output ?? []) if (o) renamed.set(o, ed.fresh(`router/${o}`))
    for (const i of up) {
      const n = orig[i] as INodeProto
      ed.addNode({
        ...n,
        name: ed.fresh(`router/${n.name ?? i}`),
        input: (n.input ?? []).map((x) => renamed.get(x) ?? x),
        output: (n.output ?? []).map((o) => (o ? (renamed.get(o) ?? o) : o)),
      })
    }
    feature = renamed.get(feature) ?? feature
  }
  const fl = opts.feature.layout
  if (fl.mode !== 'lead' || fl.rank < 2)
    throw new AppError(
      'INVALID_REQUEST',
      `router feature '${opts.feature.tensor}' must have shape [batch, ..., d] (got rank ${fl.rank}, ${fl.mode === 'flat' ? 'batch flattened into rows' : 'no batch axis'})`,
    )
  if (fl.rank > 2)
    feature = ops.reduceMean(
      feature,
      Array.from({ length: fl.rank - 2 }, (_, i) => i + 1),
      false,
      'router/pool',
    )
  let probs = opts.router(ed, ops, feature)

  // 2. Expert weights per row.
  let w = probs
  /** Top-k gather: each row's applied experts [batch, K] (int64). */
  let picked: { idx: string } | undefined
  if (opts.controls === 'inputs') {
    const b = opts.batchDim
    graph.input = [
      ...(graph.input ?? []),
      valueInfo(ed.claim(TWIN_INPUTS.mixWeights), 'float', [b, T]),
      valueInfo(ed.claim(TWIN_INPUTS.useRouter), 'float', [b, 1]),
      valueInfo(ed.claim(TWIN_INPUTS.expertMask), 'float', [b, T]),
      valueInfo(ed.claim(TWIN_INPUTS.topK), 'int64', [b, 1]),
    ]
    probs = gateRouter(ed, ops, {
      from: routerStart,
      probs,
      dims: [b, T],
      useRouter: TWIN_INPUTS.useRouter,
      passThrough: TWIN_INPUTS.mixWeights,
    })
    const masked = ed.node('Mul', [probs, TWIN_INPUTS.expertMask], { hint: 'weights/masked' })
    // Per-row top-k: the k-th largest value of each row is the threshold (ties at the threshold are all kept).
    const one = ed.int64('weights/one', [1], [])
    const tCount = ed.int64('weights/t', [K ?? T], [])
    const k = ed.node(
      'Min',
      [ed.node('Max', [TWIN_INPUTS.topK, one], { hint: 'weights/k_lo' }), tCount],
      {
        hint: 'weights/k',
      },
    )
    const kIdx = ed.node('Sub', [k, one], { hint: 'weights/k_index' }) // [batch, 1]
    const sorted = ed.node('TopK', [masked, ed.int64('weights/all', [T])], {
      outputs: [ed.fresh('weights/sorted'), ed.fresh('weights/sorted_idx')],
      attrs: { axis: -1, largest: 1, sorted: 1 },
      hint: 'weights/topk',
    })
    const kth = ed.node('GatherElements', [sorted, kIdx], {
      attrs: { axis: 1 },
      hint: 'weights/kth',
    })
    const keep = ed.node('GreaterOrEqual', [masked, kth], { hint: 'weights/keep' })
    const kept = ed.node('Where', [keep, masked, ops.scalar(0, 'weights/zero')], {
      hint: 'weights/kept',
    })
    const sum = ops.reduceSum(kept, [1], true, 'weights/sum')
    // A row whose experts are all masked gets weights 0, i.e. the shared model, instead of NaN.
    const den = ed.node('Max', [sum, ops.scalar(1e-12, 'weights/eps')], { hint: 'weights/den' })
    const routed = ed.node('Div', [kept, den], { hint: 'weights/routed' })
    const useRouter = ed.node('Greater', [TWIN_INPUTS.useRouter, ops.scalar(0.5, 'weights/half')], {
      hint: 'weights/use_router',
    })
    w = ed.node('Where', [useRouter, routed, TWIN_INPUTS.mixWeights], { hint: 'weights/w' })
    if (K !== undefined) {
      const top = emitTopK(ed, w, K)
      picked = { idx: top.idx }
      w = top.applied
    }
    ed.node('Identity', [w], { outputs: [ed.claim(TWIN_OUTPUT_WEIGHTS)] })
    graph.output = [...(graph.output ?? []), valueInfo(TWIN_OUTPUT_WEIGHTS, 'float', [b, T])]
  }

  // 3. Rename each rewritten node's first output; the corrections are summed back into the original name.
  const finalName = new Map<number, string>()
  const sharedName = new Map<number, string>()
  for (const i of siteNodes) {
    const n = orig[i] as INodeProto
    const y = n.output?.[0] ?? ''
    finalName.set(i, y)
    const s = ed.fresh(`${y}/shared`)
    sharedName.set(i, s)
    n.output = [s, ...(n.output ?? []).slice(1)]
  }
  const corrections = new Map<number, string[]>()
  const addCorrection = (i: number, c: string) =>
    corrections.set(i, [...(corrections.get(i) ?? []), c])
  const layoutOf = (i: number): RowLayout => {
    const y = finalName.get(i) ?? ''
    const l = opts.layouts.get(y)
    if (!l)
      throw new AppError(
        'INVALID_MODEL',
        `no shape information for '${y}' (internal: probe it first)`,
      )
    return l
  }

  /** Broadcasts a [batch, K] tensor to node i's output. */
  const aligned = new Map<string, string>()
  const align = (t: string, i: number): string => {
    const l = layoutOf(i)
    const key = l.mode === 'lead' ? `${t}|lead|${l.rank}` : `${t}|flat|${sharedName.get(i)}`
    const hit = aligned.get(key)
    if (hit) return hit
    let out: string
    if (l.mode === 'lead') {
      out = ops.unsqueeze(
        t,
        Array.from({ length: l.rank - 2 }, (_, j) => j + 1),
        'align',
      )
    } else {
      // [batch, K] → [batch·k, K], row-major over (batch, k): the layout of a [batch, seq, d] → [batch·seq, d]
      // reshape.
      const target = sharedName.get(i) ?? ''
      const zero = ed.int64('align/i0', [0])
      const oneIdx = ed.int64('align/i1', [1])
      const shapeT = ed.node('Shape', [t], { hint: 'align/shape_w' })
      const bDim = ed.node('Gather', [shapeT, zero], { attrs: { axis: 0 }, hint: 'align/b' })
      const kDim = ed.node('Gather', [shapeT, oneIdx], { attrs: { axis: 0 }, hint: 'align/k' })
      const nDim = ed.node(
        'Gather',
        [ed.node('Shape', [target], { hint: 'align/shape_y' }), zero],
        {
          attrs: { axis: 0 },
          hint: 'align/n',
        },
      )
      const per = ed.node('Div', [nDim, bDim], { hint: 'align/per' })
      const full = ed.node('Concat', [bDim, per, kDim], { attrs: { axis: 0 }, hint: 'align/full' })
      const expanded = ed.node('Expand', [ops.unsqueeze(t, [1], 'align'), full], {
        hint: 'align/expand',
      })
      const flat = ed.node('Concat', [ed.int64('align/minus1', [-1]), kDim], {
        attrs: { axis: 0 },
        hint: 'align/flat',
      })
      out = ed.node('Reshape', [expanded, flat], { hint: 'align/rows' })
    }
    aligned.set(key, out)
    return out
  }

  // 4. Matrices.
  const half = opts.factorDtype === 'float16'
  /** A factor under its convention name; in float16, the float32 tensor the graph computes with is a Cast. */
  const factor = (name: string, data: Float32Array, dims: readonly number[]): string => {
    if (!half) return ed.float(name, data, dims, true)
    ed.initializer(float16Tensor(ed.claim(name), data, dims))
    return ed.node('Cast', [name], {
      attrs: { to: onnx.TensorProto.DataType.FLOAT },
      hint: `${name}/f32`,
    })
  }
  /** The activation a use multiplies with the weight, as [batch, cols] (Gemm's transA undone). */
  const activationOf = (n: INodeProto, use: MatrixUse, name: string): string => {
    const x = n.input?.[0] ?? ''
    if (use.op !== 'Gemm' || intAttr(n, 'transA', 0) !== 1) return x
    return ed.node('Transpose', [x], { attrs: { perm: [1, 0] }, hint: `${name}/a_t` })
  }
  for (const given of opts.matrices) {
    const site = opts.sites.get(given.name)
    if (site?.kind !== 'matrix') continue
    if (given.sigma.length === 0) continue
    if (
      given.u.length !== given.rows * given.sigma.length ||
      given.vt.length !== given.sigma.length * given.cols ||
      given.expertOfRank.length !== given.sigma.length
    )
      throw new AppError(
        'INVALID_MODEL',
        `factors of '${given.name}' do not match [${given.rows}, ${given.cols}] at rank ${given.sigma.length}`,
      )
    const padded = picked ? padExpertMajor(given, T) : undefined
    const m = padded ? { ...given, ...padded } : given
    const R = m.sigma.length
    const U = factor(`${m.name}${TWIN_FACTOR_SUFFIXES.u}`, m.u, [m.rows, R]) // [rows, R]
    const Vt = factor(`${m.name}${TWIN_FACTOR_SUFFIXES.v}`, m.vt, [R, m.cols]) // [R, cols]
    const sigma = ed.float(`${m.name}${TWIN_FACTOR_SUFFIXES.sigma}`, m.sigma, [R], true)
    const eor = ed.int64(
      `${m.name}${TWIN_FACTOR_SUFFIXES.expertOfRank}`,
      [...m.expertOfRank],
      [R],
      true,
    )
    const uses = targets.get(m.name) ?? []
    if (picked && padded && K !== undefined) {
      const g = gatherMatrix(ed, {
        name: m.name,
        U,
        Vt,
        sigma,
        expertOfRank: eor,
        rows: m.rows,
        cols: m.cols,
        r: padded.r,
        T,
        K,
        w,
        idx: picked.idx,
      })
      for (const [k, use] of site.uses.entries()) {
        const target = uses[k] ?? use.node
        const n = orig[use.node] as INodeProto
        const x = activationOf(n, use, m.name)
        let c = g.correction(x, use.transposed, sharedName.get(target) ?? '')
        const alpha = use.op === 'Gemm' ? floatAttr(n, 'alpha', 1) : 1
        if (alpha !== 1) c = ed.node('Mul', [c, ops.scalar(alpha)], { hint: `${m.name}/alpha` })
        addCorrection(target, c)
      }
      continue
    }
    const gathered = ed.node('Gather', [w, eor], {
      attrs: { axis: 1 },
      hint: `${m.name}/w_of_rank`,
    })
    const s = ed.node('Mul', [gathered, sigma], { hint: `${m.name}/s` }) // [batch, R]
    let inT: string | undefined // [cols, R] for transposed uses
    let outT: string | undefined // [R, rows]
    for (const [k, use] of site.uses.entries()) {
      const target = uses[k] ?? use.node
      const n = orig[use.node] as INodeProto
      const x = activationOf(n, use, m.name)
      let inF = U
      let outF = Vt
      if (use.transposed) {
        inT ??= ed.node('Transpose', [Vt], { attrs: { perm: [1, 0] }, hint: `${m.name}/v_t` })
        outT ??= ed.node('Transpose', [U], { attrs: { perm: [1, 0] }, hint: `${m.name}/u_t` })
        inF = inT
        outF = outT
      }
      const xu = ed.node('MatMul', [x, inF], { hint: `${m.name}/xu` }) // [.., R]
      const z = ed.node('Mul', [xu, align(s, target)], { hint: `${m.name}/xus` })
      let c = ed.node('MatMul', [z, outF], { hint: `${m.name}/delta` }) // [.., d_out]
      const alpha = use.op === 'Gemm' ? floatAttr(n, 'alpha', 1) : 1
      if (alpha !== 1) c = ed.node('Mul', [c, ops.scalar(alpha)], { hint: `${m.name}/alpha` })
      addCorrection(target, c)
    }
  }

  // 5. Vectors.
  const normalized = new Map<number, string>()
  for (const v of opts.vectors) {
    const site = opts.sites.get(v.name)
    if (site?.kind !== 'vector') continue
    if (v.delta.length !== T * v.size)
      throw new AppError('INVALID_MODEL', `delta of '${v.name}' is not [${T}, ${v.size}]`)
    const D = ed.float(`${v.name}${TWIN_FACTOR_SUFFIXES.delta}`, v.delta, [T, v.size], true)
    const dp = ed.node('MatMul', [w, D], { hint: `${v.name}/delta` }) // [batch, d]
    for (const use of site.uses) {
      const n = orig[use.node] as INodeProto
      const a = align(dp, use.node)
      let c: string
      if (use.op === 'Add') c = a
      else if (use.op === 'Sub')
        c = use.slot === 0 ? a : ed.node('Neg', [a], { hint: `${v.name}/neg` })
      else if (use.op === 'Mul') {
        const other = n.input?.[1 - use.slot] ?? ''
        c = ed.node('Mul', [other, a], { hint: `${v.name}/scale` })
      } else if (use.op === 'LayerNormalization') {
        if (use.slot === 2) c = a
        else {
          let norm = normalized.get(use.node)
          if (!norm) {
            const ones = ed.float(`${v.name}/ones`, new Float32Array(v.size).fill(1), [v.size])
            norm = ed.node('LayerNormalization', [n.input?.[0] ?? '', ones], {
              attrs: {
                axis: intAttr(n, 'axis', -1),
                epsilon: floatAttr(n, 'epsilon', 1e-5),
                stash_type: intAttr(n, 'stash_type', 1),
              },
              hint: `${v.name}/normalized`,
            })
            normalized.set(use.node, norm)
          }
          c = ed.node('Mul', [norm, a], { hint: `${v.name}/scale` })
        }
      } else {
        const beta = floatAttr(n, 'beta', 1)
        c = beta === 1 ? a : ed.node('Mul', [a, ops.scalar(beta)], { hint: `${v.name}/beta` })
      }
      addCorrection(use.node, c)
    }
  }

  // 6. Sum the corrections into each node's original output name.
  for (const i of siteNodes) {
    const cs = corrections.get(i) ?? []
    const y = finalName.get(i) ?? ''
    let acc = sharedName.get(i) ?? ''
    cs.forEach((c, j) => {
      acc = ed.node(
        'Add',
        [acc, c],
        j === cs.length - 1 ? { outputs: [y] } : { hint: `${y}/partial` },
      )
    })
    if (cs.length === 0) ed.node('Identity', [acc], { outputs: [y] })
  }

  ed.sortTopologically()
  return model
}
