/**
 * Twin graphs of the builder's test models, emitted by the rewrite alone (no SVD, no router training, no
 * onnxruntime numerics in the factors), so that their bytes depend only on the rewrite: exact factors
 * (Δ_t = Δ_t·I), a fixed prototype or MLP router, and the configurations the rewrite distinguishes (dense and
 * top-k gather, float16 factors, variant graphs, router features that need the shared-model copy or pooling,
 * ranks that differ per expert).
 * @module
 */

import { analyseSites } from '../src/build/graph/weight-sites.ts'
import { modelInputs, syntheticFeeds } from '../src/build/import/model-io.ts'
import {
  readOnnxBytes,
  tensorToFloat32,
  withFloatInitializers,
} from '../src/build/import/read-onnx.ts'
import { trackRows } from '../src/build/pipeline/row-layouts.ts'
import { type RouterModel, routerEmitter } from '../src/build/router/router-graph.ts'
import { rewriteTwinGraph } from '../src/build/twin-graph/rewrite.ts'
import type { MatrixFactors, VectorFactors } from '../src/factors/exclusive-factors.ts'
import { onnx } from '../src/onnx/proto.ts'
import { mlpModel, perturbedParams, randomParams, transformerModel } from './test-models.ts'

const T = 3

export interface RewriteCase {
  kind: 'mlp' | 'block'
  topk?: number
  half?: boolean
  controls?: 'inputs' | 'router'
  /** Router feature; default the input of the last MatMul/Gemm. */
  feature?: string
  mlpRouter?: boolean
  /** Drop half of expert 1's rank columns and reverse the column order. */
  uneven?: boolean
  /** Store every matrix as an exact shared basis: A = I, B = I, C_t = Δ_t (recipe `exclusive.shared_basis`). */
  basis?: boolean
}

/** An exact shared basis without SVD: A = I [rows, rows], B = I [cols, cols], C_t = Δ_t. */
export function identityBasis(f: MatrixFactors, deltas: Float32Array[]): MatrixFactors {
  const { rows, cols } = f
  const eye = (n: number) =>
    Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0))
  const cores = new Float32Array(deltas.length * rows * cols)
  deltas.forEach((d, t) => {
    cores.set(d, t * rows * cols)
  })
  return { ...f, basis: { rankIn: rows, rankOut: cols, u: eye(rows), v: eye(cols), cores } }
}

/**
 * An exact factorisation without SVD: Δ_t = Δ_t · I, i.e. U_t = Δ_t [rows, cols], σ = 1, Vᵀ_t = I [cols, cols].
 * Lets the graph rewrite be checked exactly, independently of the compression.
 */
export function identityFactors(
  name: string,
  rows: number,
  cols: number,
  deltas: Float32Array[],
): MatrixFactors {
  const R = deltas.length * cols
  const u = new Float32Array(rows * R)
  const vt = new Float32Array(R * cols)
  const expertOfRank = new Int32Array(R)
  deltas.forEach((d, t) => {
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < cols; c++) u[r * R + t * cols + c] = d[r * cols + c] as number
    for (let c = 0; c < cols; c++) {
      vt[(t * cols + c) * cols + c] = 1
      expertOfRank[t * cols + c] = t
    }
  })
  return {
    kind: 'matrix',
    name,
    rows,
    cols,
    u,
    sigma: new Float32Array(R).fill(1),
    vt,
    expertOfRank,
  }
}

function uneven(f: MatrixFactors): MatrixFactors {
  const R = f.sigma.length
  const keep = [...Array(R).keys()]
    .filter((c) => !(f.expertOfRank[c] === 1 && c % 2 === 0))
    .reverse()
  const k = keep.length
  const u = new Float32Array(f.rows * k)
  const vt = new Float32Array(k * f.cols)
  keep.forEach((c, j) => {
    for (let i = 0; i < f.rows; i++) u[i * k + j] = f.u[i * R + c] as number
    vt.set(f.vt.subarray(c * f.cols, (c + 1) * f.cols), j * f.cols)
  })
  const sigma = Float32Array.from(keep, (_, j) => 1 + j / 100)
  const expertOfRank = Int32Array.from(keep, (c) => f.expertOfRank[c] as number)
  return { ...f, u, vt, sigma, expertOfRank }
}

/** Float initializers of a model, by name. */
export function floatValues(bytes: Uint8Array): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const [name, t] of readOnnxBytes(bytes, 'test').initializers)
    if (t.dataType === onnx.TensorProto.DataType.FLOAT) out.set(name, tensorToFloat32(t))
  return out
}

function lastLinearInput(nodes: readonly { opType?: string | null; input?: string[] | null }[]) {
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]
    if (n?.opType === 'MatMul' || n?.opType === 'Gemm') return n.input?.[0] ?? ''
  }
  return ''
}

function router(c: RewriteCase, d: number): RouterModel {
  if (!c.mlpRouter)
    return {
      kind: 'prototype',
      standardizer: { mean: new Float32Array(d), std: new Float32Array(d).fill(1) },
      prototypes: Float32Array.from({ length: d * T }, (_, i) => Math.sin(i)),
      temperature: 0.5,
    }
  return {
    kind: 'mlp',
    standardizer: {
      mean: Float32Array.from({ length: d }, (_, i) => i / 10),
      std: new Float32Array(d).fill(2),
    },
    mlp: {
      sizes: [d, 5, T],
      layers: [
        {
          weight: Float32Array.from({ length: d * 5 }, (_, i) => Math.cos(i)),
          bias: new Float32Array(5).fill(0.1),
        },
        {
          weight: Float32Array.from({ length: 5 * T }, (_, i) => Math.sin(i)),
          bias: new Float32Array(T),
        },
      ],
    },
  }
}

/** The rewrite of one case and what it was made from: base and experts from the test models, shared = their mean. */
export async function rewriteSetup(c: RewriteCase) {
  const build = c.kind === 'mlp' ? mlpModel : transformerModel
  const base = randomParams(1)
  const expertBytes = Array.from({ length: T }, (_, t) => build(perturbedParams(base, t + 2, 0.1)))
  const ex = expertBytes.map(floatValues)
  const model = readOnnxBytes(build(base), 'base')
  const sites = analyseSites(model.graph, model.initializers)
  const shared = new Map<string, Float32Array>()
  for (const name of ex[0]?.keys() ?? []) {
    const vs = ex.map((m) => m.get(name) as Float32Array)
    shared.set(
      name,
      (vs[0] as Float32Array).map((_, i) => vs.reduce((a, v) => a + (v[i] as number), 0) / T),
    )
  }
  const matrices: MatrixFactors[] = []
  const vectors: VectorFactors[] = []
  for (const [name, site] of sites) {
    const s = shared.get(name) as Float32Array
    const deltas = ex.map((m) => (m.get(name) as Float32Array).map((x, i) => x - (s[i] as number)))
    if (site.kind === 'matrix') {
      const f = identityFactors(name, site.shape[0], site.shape[1], deltas)
      matrices.push(c.basis ? identityBasis(f, deltas) : c.uneven ? uneven(f) : f)
    }
    if (site.kind === 'vector') {
      const delta = new Float32Array(T * site.shape[0])
      deltas.forEach((d, t) => {
        delta.set(d, t * site.shape[0])
      })
      vectors.push({ kind: 'vector', name, size: site.shape[0], delta })
    }
  }
  const sharedModel = withFloatInitializers(model.model, shared)
  const feature = c.feature ?? lastLinearInput(model.graph.node ?? [])
  const inputs = modelInputs(model.graph)
  const { infos, layouts } = await trackRows(sharedModel, inputs, syntheticFeeds(inputs, 3, 7))
  const d = infos.get(feature)?.dims.at(-1) ?? 0
  const twin = rewriteTwinGraph({
    model: sharedModel,
    sites,
    matrices,
    vectors,
    experts: T,
    layouts,
    feature: { tensor: feature, layout: layouts.get(feature) },
    batchInput: inputs[0]?.name ?? '',
    router: routerEmitter(router(c, d)),
    controls: c.controls ?? 'inputs',
    batchDim: 'batch',
    ...(c.half ? { factorDtype: 'float16' as const } : {}),
    ...(c.topk ? { topkGather: c.topk } : {}),
  })
  return { twin, sharedModel, expertBytes, ex, shared, inputs, sites, model }
}

/** The encoded twin graph of one case. */
export async function emitRewriteCase(c: RewriteCase): Promise<Uint8Array> {
  return onnx.ModelProto.encode((await rewriteSetup(c)).twin).finish()
}
