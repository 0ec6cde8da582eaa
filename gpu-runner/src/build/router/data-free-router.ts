/**
 * The data-free router (SMILE, issue #18): routing weights from the stored factors alone, no routing data. The
 * router feature x is the input of one matrix W that carries exclusive knowledge; expert t changes that layer by
 * x·ΔW_t = (x·U_t)·diag(σ_t)·V_tᵀ, so how strongly expert t's knowledge responds to x, relative to its size, is
 *   score_t = ‖diag(σ_t)·U_tᵀx̄‖ / (‖σ_t‖·‖x̄‖)  ∈ [0, 1]          (= ‖ΔW_tᵀx̄‖ / (‖ΔW_t‖_F·‖x̄‖) at the kept rank)
 * and the weights are softmax(score / temperature). x̄ is x minus its own mean over the features: inputs that are
 * all positive (pixels, ReLU outputs) share one large constant direction that every expert's subspace picks up,
 * and without the centring it decides the argmax (Fashion zoo, pixels: 15% routing accuracy raw, 41% centred). Weighting each direction by its σ (rather than SMILE's
 * unweighted ‖V_iᵀx‖ over a fixed top-k) keeps experts comparable when a byte budget gives them different
 * ranks: the low-σ tail a larger rank adds barely moves the score.
 * @see https://arxiv.org/abs/2408.10174 (SMILE: zero-shot sparse mixture of low-rank experts)
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { MatrixFactors } from '../../factors/exclusive-factors.ts'
import { decodeFloat16, encodeFloat16 } from '../../onnx/float16.ts'
import type { INodeProto } from '../../onnx/proto.ts'
import { argmaxRows } from '../../train/index.ts'
import type { TensorSite } from '../graph/weight-sites.ts'
import type { Features } from './features.ts'

export interface DataFreeRouter {
  kind: 'data-free'
  /** The matrix whose input the router reads. */
  matrix: string
  /** [d, K]: column j = input-side singular vector j scaled by σ_j / ‖σ_{e(j)}‖. */
  basis: Float32Array
  /** [K] expert of each column. */
  expertOfColumn: Int32Array
  temperature: number
  /** Storage type of `basis` in the graph (the factors' `exclusive.dtype`); `basis` holds the stored values. */
  dtype: 'float32' | 'float16'
}

/**
 * The input-side factors of the matrix that reads `feature`, from the exclusive knowledge.
 * @throws AppError INVALID_REQUEST when no exclusive matrix is multiplied with the feature, or an expert has no
 *   rank there (it could never be routed to)
 */
export function dataFreeRouter(opts: {
  feature: string
  nodes: readonly INodeProto[]
  sites: ReadonlyMap<string, TensorSite>
  matrices: readonly MatrixFactors[]
  experts: readonly string[]
  temperature: number
  dtype: 'float32' | 'float16'
}): DataFreeRouter {
  const { feature, nodes, sites, matrices, experts } = opts
  let found: { m: MatrixFactors; transposed: boolean } | undefined
  for (const m of matrices) {
    const site = sites.get(m.name)
    if (site?.kind !== 'matrix') continue
    for (const use of site.uses) {
      const n = nodes[use.node]
      const transA = (n?.attribute ?? []).some((a) => a.name === 'transA' && Number(a.i) === 1)
      if (use.op !== 'Gather' && n?.input?.[0] === feature && !transA) {
        found = { m, transposed: use.transposed }
        break
      }
    }
    if (found) break
  }
  if (!found)
    throw new AppError(
      'INVALID_REQUEST',
      `router.kind data-free reads the factors of the matrix multiplied with router.feature '${feature}', and no matrix with exclusive knowledge is (name the input of a MatMul/Gemm weight that carries exclusive knowledge as router.feature)`,
    )
  const { m, transposed } = found
  // x·W with W stored [rows, cols]: the input side is U [rows, R]; with Wᵀ it is Vᵀ [R, cols].
  const d = transposed ? m.cols : m.rows
  const R = m.sigma.length
  const norm = new Float64Array(experts.length)
  for (let j = 0; j < R; j++) {
    const t = m.expertOfRank[j] as number
    norm[t] = (norm[t] as number) + (m.sigma[j] as number) ** 2
  }
  const missing = experts.filter((_, t) => !((norm[t] as number) > 0))
  if (missing.length > 0)
    throw new AppError(
      'INVALID_REQUEST',
      `router.kind data-free: expert${missing.length > 1 ? 's' : ''} ${missing.map((e) => `'${e}'`).join(', ')} keep${missing.length > 1 ? '' : 's'} no rank in '${m.name}', the matrix that reads router.feature, so the router could never pick ${missing.length > 1 ? 'them' : 'it'}; raise the rank or budget, or route from another feature`,
    )
  const basis = new Float32Array(d * R) // [d, R]
  for (let j = 0; j < R; j++) {
    const scale = (m.sigma[j] as number) / Math.sqrt(norm[m.expertOfRank[j] as number] as number)
    for (let i = 0; i < d; i++) {
      const v = transposed ? (m.vt[j * m.cols + i] as number) : (m.u[i * R + j] as number)
      basis[i * R + j] = v * scale
    }
  }
  return {
    kind: 'data-free',
    matrix: m.name,
    // Rounded as stored, so that the held-out predictions are the embedded router's.
    basis: opts.dtype === 'float16' ? decodeFloat16(encodeFloat16(basis)) : basis,
    dtype: opts.dtype,
    expertOfColumn: Int32Array.from(m.expertOfRank),
    temperature: opts.temperature,
  }
}

/** score_t per row of `f` ([n, T]), as the graph computes it. */
export function dataFreeScores(r: DataFreeRouter, f: Features, experts: number): Float32Array {
  const { d } = f
  const K = r.expertOfColumn.length
  const n = f.x.length / d
  const out = new Float32Array(n * experts)
  const x = new Float64Array(d)
  for (let i = 0; i < n; i++) {
    let m = 0
    for (let a = 0; a < d; a++) m += f.x[i * d + a] as number
    m /= d
    let xx = 0
    for (let a = 0; a < d; a++) {
      x[a] = (f.x[i * d + a] as number) - m
      xx += (x[a] as number) ** 2
    }
    const acc = new Float64Array(experts)
    for (let j = 0; j < K; j++) {
      let p = 0
      for (let a = 0; a < d; a++) p += (x[a] as number) * (r.basis[a * K + j] as number)
      const t = r.expertOfColumn[j] as number
      acc[t] = (acc[t] as number) + p * p
    }
    const den = Math.max(Math.sqrt(xx), 1e-12)
    for (let t = 0; t < experts; t++) out[i * experts + t] = Math.sqrt(acc[t] as number) / den
  }
  return out
}

/** The expert each row of `f` routes to (argmax of the scores; the softmax does not change it). */
export function dataFreePredict(r: DataFreeRouter, f: Features, experts: number): Int32Array {
  return argmaxRows(dataFreeScores(r, f, experts), experts)
}
