/**
 * The materialised merge path: for a per-request nonlinear merge (`merge_method`: ties, dare_ties, …) the
 * experts' deltas are rebuilt from the twin graph's factors (naming convention in
 * shared/src/schemas/twin-package.ts), merged one tensor at a time by the merge engine, and the merged tensors are
 * fed to a copy of the twin graph whose exclusive initializers have become inputs (one session per model, built
 * once; no session per recipe). With weights 0 the twin graph's factored branch adds nothing, so that graph then
 * computes exactly the model with the merged weights.
 *
 * This is what the Twin-Merging reference code does per input (merge, then run); Twinserve caches the merged
 * tensors per canonical recipe (merge-cache.ts) so a repeated recipe pays the merge once.
 * @see https://arxiv.org/abs/2406.15479
 * @module
 */
import {
  AppError,
  type MergeSpec,
  type PackageManifest,
  TWIN_FACTOR_SUFFIXES,
} from '@twinserve/shared'
import {
  columnsOf,
  type ExclusiveFactors,
  type FactorsWithShared,
  shapeOf,
} from '../factors/exclusive-factors.ts'
import { int8TensorValues } from '../factors/int8-factors.ts'
import { basisAsExpertFactors } from '../factors/shared-basis-factors.ts'
import type { MatmulBackend } from '../merge/matmul.ts'
import { float16TensorValues } from '../onnx/float16.ts'
import { valueInfo } from '../onnx/graph-builder.ts'
import { type ITensorProto, onnx, TensorDataType, toNumber } from '../onnx/proto.ts'

/** The merge engine's tensor-level entry point (gpu-runner/src/merge): merged θ of one tensor. */
export type MergeTensorFn = (
  spec: MergeSpec,
  input: {
    base: Float32Array
    experts: Float32Array[]
    names: string[]
    shape: number[]
    tensorName: string
  },
) => Float32Array | Promise<Float32Array>

function invalid(model: string, message: string): AppError {
  return new AppError('INVALID_MODEL', `model '${model}': ${message}`)
}

function dimsOf(t: ITensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d))
}

function floatsOf(t: ITensorProto, model: string, allowHalf = false): Float32Array {
  const n = dimsOf(t).reduce((a, b) => a * b, 1)
  // Factors may be stored as float16 or int8 (recipe `exclusive.dtype`; int8's scales are in σ); widening is exact.
  if (allowHalf && t.dataType === TensorDataType.FLOAT16) {
    const values = float16TensorValues(t, n)
    if (!values) throw invalid(model, `initializer '${t.name}' has no data for ${n} float16 values`)
    return values
  }
  if (allowHalf && t.dataType === TensorDataType.INT8) {
    const values = int8TensorValues(t, n)
    if (!values) throw invalid(model, `initializer '${t.name}' has no data for ${n} int8 values`)
    return values
  }
  if (t.dataType !== TensorDataType.FLOAT)
    throw invalid(
      model,
      `initializer '${t.name}' is not float32${allowHalf ? ', float16 or int8' : ''}`,
    )
  if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length !== n * 4)
      throw invalid(
        model,
        `initializer '${t.name}' has ${t.rawData.length} bytes, expected ${n * 4}`,
      )
    // Copy: protobuf's raw bytes need not be 4-byte aligned.
    const copy = new Uint8Array(t.rawData)
    return new Float32Array(copy.buffer, 0, n)
  }
  const fd = t.floatData ?? []
  if (fd.length !== n) throw invalid(model, `initializer '${t.name}' has no data`)
  return Float32Array.from(fd)
}

function intsOf(t: ITensorProto, model: string): Int32Array {
  const n = dimsOf(t).reduce((a, b) => a * b, 1)
  if (t.dataType === TensorDataType.INT64) {
    if (t.rawData && t.rawData.length > 0) {
      const copy = new Uint8Array(t.rawData)
      return Int32Array.from(new BigInt64Array(copy.buffer, 0, n), (v) => Number(v))
    }
    return Int32Array.from((t.int64Data ?? []).map((v) => toNumber(v)))
  }
  throw invalid(model, `initializer '${t.name}' is not int64`)
}

/**
 * Reads every exclusive tensor's shared value and factors from the twin graph, checking names and shapes against
 * the manifest and the convention.
 * @throws AppError INVALID_MODEL naming the first missing or misshapen initializer
 */
export function readExclusiveFactors(
  graph: { initializer?: ITensorProto[] | null },
  manifest: PackageManifest,
): FactorsWithShared[] {
  const model = manifest.name
  const T = manifest.experts.length
  const inits = new Map<string, ITensorProto>()
  for (const t of graph.initializer ?? []) if (t.name) inits.set(t.name, t)
  const need = (name: string, dims: (number | 'R')[]): { t: ITensorProto; R: number } => {
    const t = inits.get(name)
    if (!t)
      throw invalid(
        model,
        `the twin graph has no initializer '${name}' (exclusive-knowledge naming convention, shared/src/schemas/twin-package.ts)`,
      )
    const got = dimsOf(t)
    let R = -1
    const ok =
      got.length === dims.length &&
      dims.every((d, i) => {
        const g = got[i] ?? -1
        if (d !== 'R') return g === d
        if (R === -1) R = g
        return g === R && g > 0
      })
    if (!ok)
      throw invalid(
        model,
        `initializer '${name}' has shape [${got.join(',')}], expected [${dims.join(',')}]`,
      )
    return { t, R }
  }
  const S = TWIN_FACTOR_SUFFIXES
  // A matrix kept at rank 0 for every expert has no factors (and no exclusive knowledge): nothing to merge.
  const rankless = (e: (typeof manifest.exclusive)[number]) =>
    e.kind === 'matrix' &&
    (e.ranks ?? []).reduce((a, b) => a + b, 0) === 0 &&
    e.ranks !== undefined &&
    !inits.has(`${e.name}${S.u}`)
  return manifest.exclusive
    .filter((e) => !rankless(e))
    .map((e): FactorsWithShared => {
      if (e.kind === 'vector') {
        const [d] = e.shape
        if (e.shape.length !== 1 || d === undefined)
          throw invalid(
            model,
            `exclusive vector '${e.name}' must be 1-D, got [${e.shape.join(',')}]`,
          )
        return {
          kind: 'vector',
          name: e.name,
          size: d,
          shared: floatsOf(need(e.name, [d]).t, model),
          delta: floatsOf(need(`${e.name}${S.delta}`, [T, d]).t, model),
        }
      }
      const [rows, cols] = e.shape
      if (e.shape.length !== 2 || rows === undefined || cols === undefined)
        throw invalid(model, `exclusive matrix '${e.name}' must be 2-D, got [${e.shape.join(',')}]`)
      if (e.basis) {
        const { rankIn: Ri, rankOut: Ro } = e.basis
        return {
          ...basisAsExpertFactors(
            {
              rankIn: Ri,
              rankOut: Ro,
              u: floatsOf(need(`${e.name}${S.basisU}`, [rows, Ri]).t, model, true),
              v: floatsOf(need(`${e.name}${S.basisV}`, [Ro, cols]).t, model, true),
              cores: floatsOf(need(`${e.name}${S.cores}`, [T, Ri, Ro]).t, model, true),
            },
            e.name,
            rows,
            cols,
            T,
          ),
          shared: floatsOf(need(e.name, [rows, cols]).t, model, true),
        }
      }
      const u = need(`${e.name}${S.u}`, [rows, 'R'])
      const R = u.R
      const expertOfRank = intsOf(need(`${e.name}${S.expertOfRank}`, [R]).t, model)
      for (const t of expertOfRank)
        if (t < 0 || t >= T)
          throw invalid(model, `'${e.name}${S.expertOfRank}' names expert ${t}, outside [0, ${T})`)
      return {
        kind: 'matrix',
        name: e.name,
        rows,
        cols,
        // float16 with recipe `shared_dtype: float16` (the file's Cast widens it; so does floatsOf, exactly).
        shared: floatsOf(need(e.name, [rows, cols]).t, model, true),
        u: floatsOf(u.t, model, true),
        vt: floatsOf(need(`${e.name}${S.v}`, [R, cols]).t, model, true),
        sigma: floatsOf(need(`${e.name}${S.sigma}`, [R]).t, model),
        expertOfRank,
      }
    })
}

/** Below this many multiply-adds a JS loop beats a call into onnxruntime. */
const GEMM_MIN_MACS = 1 << 16

/**
 * Expert `t`'s dense delta of one exclusive tensor: ΔW_t = Σ_{r: e(r)=t} σ_r·U[:, r] ⊗ V[r, :] (as one product
 * (U_t·diag σ_t)·V_t on onnxruntime when a backend is given and the product is large), or Δb_t.
 */
export async function expertDelta(
  f: ExclusiveFactors,
  t: number,
  backend?: MatmulBackend,
): Promise<Float32Array> {
  if (f.kind === 'vector') return f.delta.slice(t * f.size, (t + 1) * f.size)
  const { rows, cols } = f
  const R = f.sigma.length
  const ranks = columnsOf(f, t)
  const k = ranks.length
  if (k === 0) return new Float32Array(rows * cols)
  if (backend && rows * cols * k >= GEMM_MIN_MACS) {
    const a = new Float32Array(rows * k) // [rows, k] = U_t·diag(σ_t)
    const b = new Float32Array(k * cols) // [k, cols] = V_t
    ranks.forEach((r, j) => {
      const s = f.sigma[r] ?? 0
      for (let i = 0; i < rows; i++) a[i * k + j] = (f.u[i * R + r] ?? 0) * s
      b.set(f.vt.subarray(r * cols, (r + 1) * cols), j * cols)
    })
    return backend.gemm(a, [rows, k], b, [k, cols])
  }
  const out = new Float32Array(rows * cols) // [rows, cols]
  for (const r of ranks) {
    const s = f.sigma[r] ?? 0
    for (let i = 0; i < rows; i++) {
      const ui = (f.u[i * R + r] ?? 0) * s
      if (ui === 0) continue
      const o = i * cols
      const vo = r * cols
      for (let j = 0; j < cols; j++) out[o + j] = (out[o + j] ?? 0) + ui * (f.vt[vo + j] ?? 0)
    }
  }
  return out
}

/** mergekit (and the merge engine) treat a task-arithmetic weight sum this close to 0 as 1 when normalising. */
const SUM_DIVISOR_EPS = 1e-8

/**
 * A linear merge of θ_t = θ_s + Δ_t as θ = a·θ_s + Σ_t c_t·Δ_t (c by expert index), for the methods where that
 * closed form is exact: `task_arithmetic` (θ_s + λ·Σ w_t·Δ_t, divided by Σ w_t when normalised) and `linear`
 * (Σ w_t·θ_t, divided by Σ w_t when normalised). Weights default to 1 as in the merge engine.
 * @returns undefined for every other method, and for a normalised `linear` whose weights sum to 0 (the merge
 * engine refuses that with its own message)
 */
export function linearForm(
  spec: MergeSpec,
  experts: readonly { name: string; index: number }[],
): { a: number; c: Map<number, number> } | undefined {
  if (spec.method !== 'task_arithmetic' && spec.method !== 'linear') return undefined
  const w = experts.map((e) => spec.experts[e.name]?.weight ?? 1)
  const total = w.reduce((x, y) => x + y, 0)
  let a: number
  let scale: number
  if (spec.method === 'task_arithmetic') {
    a = 1
    scale = spec.lambda / (spec.normalize && Math.abs(total) >= SUM_DIVISOR_EPS ? total : 1)
  } else {
    if (spec.normalize && total === 0) return undefined
    scale = spec.normalize ? 1 / total : 1
    a = scale * total
  }
  const c = new Map<number, number>()
  experts.forEach((e, i) => {
    c.set(e.index, (c.get(e.index) ?? 0) + scale * (w[i] as number))
  })
  return { a, c }
}

/**
 * θ = a·θ_s + Σ_t c_t·Δ_t for every exclusive tensor, in closed form: a matrix's Σ_t c_t·ΔW_t is one product
 * U·diag(σ ⊙ c[expert_of_rank])·Vᵀ over the mixed experts' rank columns, instead of rebuilding each expert's dense
 * delta and mixing them element by element: on a BERT-base-sized package with 8 experts at rank 16, 0.65–0.95 s
 * per request instead of 6.8–8.9 s (minutes apart on the same shared 2-core machine; bench:perf times the whole
 * request).
 */
async function linearMerge(
  factors: readonly FactorsWithShared[],
  form: { a: number; c: Map<number, number> },
  backend?: MatmulBackend,
  allocate: (n: number) => Float32Array = (n) => new Float32Array(n),
): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>()
  for (const f of factors) {
    const merged = allocate(f.shared.length)
    for (let i = 0; i < merged.length; i++) merged[i] = form.a * (f.shared[i] as number)
    if (f.kind === 'vector') {
      const d = f.size
      for (const [t, ct] of form.c) {
        if (ct === 0) continue
        for (let j = 0; j < d; j++)
          merged[j] = (merged[j] as number) + ct * (f.delta[t * d + j] as number)
      }
    } else {
      const { rows, cols } = f
      const R = f.sigma.length
      const used: number[] = []
      for (let r = 0; r < R; r++)
        if ((form.c.get(f.expertOfRank[r] as number) ?? 0) !== 0) used.push(r)
      const k = used.length
      if (k > 0) {
        const us = new Float32Array(rows * k) // [rows, k] = U·diag(σ ⊙ c)
        const v = new Float32Array(k * cols) // [k, cols]
        used.forEach((r, j) => {
          const s = (f.sigma[r] as number) * (form.c.get(f.expertOfRank[r] as number) ?? 0)
          for (let i = 0; i < rows; i++) us[i * k + j] = (f.u[i * R + r] as number) * s
          v.set(f.vt.subarray(r * cols, (r + 1) * cols), j * cols)
        })
        const delta =
          backend && rows * cols * k >= GEMM_MIN_MACS
            ? await backend.gemm(us, [rows, k], v, [k, cols])
            : jsProduct(us, v, rows, k, cols)
        for (let i = 0; i < merged.length; i++)
          merged[i] = (merged[i] as number) + (delta[i] as number)
      }
    }
    out.set(f.name, merged)
  }
  return out
}

/** [rows, k] · [k, cols] in a JS loop (small products). */
function jsProduct(a: Float32Array, b: Float32Array, rows: number, k: number, cols: number) {
  const out = new Float32Array(rows * cols)
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < k; j++) {
      const x = a[i * k + j] as number
      if (x === 0) continue
      for (let c = 0; c < cols; c++)
        out[i * cols + c] = (out[i * cols + c] as number) + x * (b[j * cols + c] as number)
    }
  return out
}

/**
 * Merges the named experts tensor by tensor: base θ_s, experts θ_s + Δ_t (the experts as the package knows them:
 * shared plus exclusive knowledge). Only exclusive tensors differ between experts; everything else is θ_s.
 * Linear methods (task_arithmetic, linear) take a closed form on the factors (linearMerge); every other method
 * goes through the merge engine on the rebuilt dense tensors.
 * @param allocate where the closed form writes its results (shared memory for a session thread)
 * @returns merged value per exclusive tensor name
 */
export async function materializeMerge(
  factors: readonly FactorsWithShared[],
  spec: MergeSpec,
  experts: readonly { name: string; index: number }[],
  merge: MergeTensorFn,
  backend?: MatmulBackend,
  allocate?: (n: number) => Float32Array,
): Promise<Map<string, Float32Array>> {
  const form = linearForm(spec, experts)
  if (form) return linearMerge(factors, form, backend, allocate)
  const out = new Map<string, Float32Array>()
  for (const f of factors) {
    const thetas: Float32Array[] = []
    for (const { index } of experts) {
      const d = await expertDelta(f, index, backend)
      for (let i = 0; i < d.length; i++) d[i] = (d[i] ?? 0) + (f.shared[i] ?? 0)
      thetas.push(d)
    }
    let merged: Float32Array
    try {
      merged = await merge(spec, {
        base: f.shared,
        experts: thetas,
        names: experts.map((e) => e.name),
        shape: shapeOf(f),
        tensorName: f.name,
      })
    } catch (err) {
      if (err instanceof AppError) throw err
      throw new AppError('MERGE_FAILED', `merge of tensor '${f.name}' failed`, { cause: err })
    }
    if (merged.length !== f.shared.length)
      throw new AppError(
        'MERGE_FAILED',
        `merge of tensor '${f.name}' returned ${merged.length} values, expected ${f.shared.length}`,
      )
    out.set(f.name, merged)
  }
  return out
}

/**
 * A copy of the twin graph in which the named initializers are graph inputs instead (fed per run with merged
 * values). Everything else, the factored branch and the router included, is unchanged.
 */
export function initializersToInputs(twin: Uint8Array, names: readonly string[]): Uint8Array {
  const model = onnx.ModelProto.decode(twin)
  const graph = model.graph
  if (!graph) throw new AppError('INVALID_MODEL', 'twin graph has no graph')
  const wanted = new Set(names)
  const kept: ITensorProto[] = []
  const moved: ITensorProto[] = []
  for (const t of graph.initializer ?? []) (wanted.has(t.name ?? '') ? moved : kept).push(t)
  graph.initializer = kept as typeof graph.initializer
  // ONNX IR ≥ 4 also allows an initializer listed among inputs (an overridable default); drop such entries.
  const inputs = (graph.input ?? []).filter((i) => !wanted.has(i.name ?? ''))
  for (const t of moved)
    inputs.push(onnx.ValueInfoProto.create(valueInfo(t.name ?? '', 'float', dimsOf(t))))
  graph.input = inputs
  return onnx.ModelProto.encode(model).finish()
}
