/**
 * End-of-build verification on the package as written: reload it through `loadPackage` (hashes checked), then
 * - all-zero weights must reproduce the shared model (the package's `shared` variant file when it has one, else
 *   the shared merge as the builder holds it in memory): exactly in principle, the max |Δ| is reported, and
 *   float32 rounding, 1e-5 relative, is tolerated for graphs onnxruntime fuses differently;
 * - a one-hot row for expert t is compared with expert t's own ONNX model (max |Δ| reported: the compression
 *   error, 0 up to float rounding at full rank), next to how far expert t is from the shared model;
 * - the embedded router, run on the held-out routing examples, must agree with the router as trained;
 * - every variant must load and give finite outputs.
 * @module
 */
import { AppError, SHARED_VARIANT, TWIN_OUTPUT_WEIGHTS } from '@twinserve/shared'
import { loadPackage } from '../../package/load-package.ts'
import { openSession, type ort } from '../../runtime/ort-session.ts'
import { argmaxRows } from '../../train/index.ts'
import { encodeControls, type RowControls } from '../../twin-contract/encode-controls.ts'
import { type IoTensor, stackExamples } from '../import/model-io.ts'
import { batchesOf } from '../router/features.ts'
import type { RoutingExample } from '../router/routing-data.ts'

export interface VerifyInput {
  /** The package directory (staged, before it is renamed into place). */
  dir: string
  inputs: readonly IoTensor[]
  /** Float outputs of the base model to compare. */
  outputs: readonly string[]
  /** Expert ONNX files (paths, so that external data loads too), in manifest order. */
  experts: readonly { name: string; path: string }[]
  /**
   * The shared model as a plain graph, for packages without a `shared` variant file (recipe `shared_file:
   * false`); a package that has the file is checked against the file.
   */
  shared?: Uint8Array
  /** Check inputs for the output comparisons. */
  checks: readonly RoutingExample[]
  /** Held-out routing examples and the trained router's predictions for them. */
  heldout: readonly RoutingExample[]
  heldoutPredictions: Int32Array
  onProgress?: (done: number, total: number) => void
}

export interface ExpertCheck {
  name: string
  /** max |twin(one-hot t) − expert t| over the check inputs and outputs. */
  oneHotMaxAbsDiff: number
  /** max |shared − expert t|: the scale the diff above should be small against. */
  sharedMaxAbsDiff: number
}

export interface VerifyResult {
  /** max |twin(w = 0) − shared variant|; 0 when the contract holds exactly. */
  zeroWeightsMaxAbsDiff: number
  experts: ExpertCheck[]
  /** Held-out accuracy of the router as embedded in the package. */
  routerHeldoutAccuracy: number
  /** Fraction of held-out examples where the embedded router picks what the trained one picked. */
  routerAgreement: number
  /** Largest |Σ_t w_t − 1| over routed rows. */
  routerSumError: number
  variants: { name: string; finite: boolean }[]
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = a.length === b.length ? 0 : Number.POSITIVE_INFINITY
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number))
    m = Number.isNaN(d) ? Number.POSITIVE_INFINITY : Math.max(m, d)
  }
  return m
}

type Session = ort.InferenceSession
type Feeds = Record<string, ort.Tensor>

/** What the checks share: the open sessions, the check inputs in batches, progress. */
interface Checking {
  v: VerifyInput
  T: number
  twin: Session
  shared: Session
  groups: { B: number; feeds: Feeds; base: Float32Array[] }[]
  outputsOf: (out: ort.InferenceSession.OnnxValueMapType) => Float32Array[]
  tick: (n: number) => void
}

/** Every row with the same controls. */
const rowsOf = (B: number, T: number, row: RowControls) => encodeControls(Array(B).fill(row), T)

/** All-zero weights against the shared model; also records the shared outputs for the one-hot check. */
async function checkZeroWeights(c: Checking): Promise<{ maxAbsDiff: number; scale: number }> {
  let zeroDiff = 0
  let scale = 0
  for (const g of c.groups) {
    g.base = c.outputsOf(await c.shared.run(g.feeds))
    const zero = c.outputsOf(await c.twin.run({ ...g.feeds, ...rowsOf(g.B, c.T, {}) }))
    zero.forEach((z, i) => {
      zeroDiff = Math.max(zeroDiff, maxAbsDiff(z, g.base[i] as Float32Array))
      for (const y of g.base[i] as Float32Array) scale = Math.max(scale, Math.abs(y))
    })
    c.tick(g.B * 2)
  }
  return { maxAbsDiff: zeroDiff, scale }
}

/** A one-hot row for expert t against expert t's own model, next to how far expert t is from the shared model. */
async function checkOneHot(c: Checking): Promise<ExpertCheck[]> {
  const out: ExpertCheck[] = []
  // One expert session open at a time: all of them at once held every expert's weights (and onnxruntime's
  // prepacked copies) together, ~3 GB more peak memory for eight BERT-base-sized experts.
  for (const [t, e] of c.v.experts.entries()) {
    let oneHot = 0
    let gap = 0
    const { session: expert } = await openSession(e.path, { provider: 'cpu' })
    try {
      const mixWeights = Array.from({ length: c.T }, (_, j) => (j === t ? 1 : 0))
      for (const g of c.groups) {
        const twinT = c.outputsOf(
          await c.twin.run({ ...g.feeds, ...rowsOf(g.B, c.T, { mixWeights }) }),
        )
        const expertT = c.outputsOf(await expert.run(g.feeds))
        twinT.forEach((y, i) => {
          oneHot = Math.max(oneHot, maxAbsDiff(y, expertT[i] as Float32Array))
          gap = Math.max(gap, maxAbsDiff(g.base[i] as Float32Array, expertT[i] as Float32Array))
        })
        c.tick(g.B)
      }
    } finally {
      await expert.release()
    }
    out.push({ name: e.name, oneHotMaxAbsDiff: oneHot, sharedMaxAbsDiff: gap })
  }
  return out
}

/** The embedded router on the held-out examples, against the router as trained and the true experts. */
async function checkRouter(
  c: Checking,
): Promise<Pick<VerifyResult, 'routerHeldoutAccuracy' | 'routerAgreement' | 'routerSumError'>> {
  const { v, T } = c
  let agree = 0
  let correct = 0
  let sumError = 0
  let offset = 0
  for (const group of batchesOf(v.heldout, 256)) {
    const B = group.length
    const feeds = stackExamples(
      v.inputs,
      group.map((g) => g.inputs),
      'verification',
    )
    const out = await c.twin.run({ ...feeds, ...rowsOf(B, T, { useRouter: 1 }) })
    const w = out[TWIN_OUTPUT_WEIGHTS]?.data as Float32Array
    const picked = argmaxRows(w, T)
    for (let r = 0; r < B; r++) {
      if (picked[r] === v.heldoutPredictions[offset + r]) agree++
      if (picked[r] === group[r]?.expert) correct++
      let s = 0
      for (let t = 0; t < T; t++) s += w[r * T + t] as number
      sumError = Math.max(sumError, Math.abs(s - 1))
    }
    offset += B
    c.tick(B)
  }
  return {
    routerHeldoutAccuracy: v.heldout.length ? correct / v.heldout.length : 0,
    routerAgreement: v.heldout.length ? agree / v.heldout.length : 1,
    routerSumError: sumError,
  }
}

/** Every variant loads and gives finite outputs on the first check inputs. */
async function checkVariants(
  c: Checking,
  variants: ReadonlyMap<string, Uint8Array>,
  open: (bytes: Uint8Array) => Promise<Session>,
): Promise<VerifyResult['variants']> {
  const out: VerifyResult['variants'] = []
  if (variants.size === 0) return out
  const first = c.v.checks.slice(0, 8)
  const feeds = stackExamples(
    c.v.inputs,
    first.map((g) => g.inputs),
    'verification',
  )
  for (const [name, bytes] of variants) {
    const s = await open(bytes)
    const outputs = c.outputsOf(await s.run(feeds))
    out.push({ name, finite: outputs.every((o) => o.every((x) => Number.isFinite(x))) })
  }
  return out
}

function problemsOf(result: VerifyResult, scale: number): string[] {
  const problems: string[] = []
  // Exact in principle (the corrections add 0), but onnxruntime fuses the shared nodes differently once
  // corrections sit between them (e.g. Add + Gelu → BiasGelu, Add + LayerNormalization → SkipLayerNormalization),
  // which changes float32 rounding: measured 5.7e-7 on a 12-layer BERT-shaped encoder.
  if (result.zeroWeightsMaxAbsDiff > 1e-5 * scale)
    problems.push(
      `all-zero weights differ from the shared model by ${result.zeroWeightsMaxAbsDiff}`,
    )
  for (const e of result.experts)
    if (!Number.isFinite(e.oneHotMaxAbsDiff))
      problems.push(`expert '${e.name}' one-hot output is not finite`)
  // Float rounding can flip an argmax between two near-equal weights; more than 1% is a broken router.
  if (result.routerAgreement < 0.99)
    problems.push(
      `the embedded router agrees with the trained one on only ${(result.routerAgreement * 100).toFixed(1)}% of held-out examples`,
    )
  if (result.routerSumError > 1e-4)
    problems.push(`router weights sum to 1 ± ${result.routerSumError}`)
  for (const x of result.variants)
    if (!x.finite) problems.push(`variant '${x.name}' gives non-finite outputs`)
  return problems
}

export async function verifyPackage(v: VerifyInput): Promise<VerifyResult> {
  const pkg = await loadPackage(v.dir)
  const T = pkg.manifest.experts.length
  const sessions: Session[] = []
  const open = async (model: Uint8Array | string) => {
    const { session } = await openSession(model, { provider: 'cpu' })
    sessions.push(session)
    return session
  }
  try {
    const twin = await open(pkg.model)
    const sharedBytes = pkg.variants.get(SHARED_VARIANT) ?? v.shared
    if (!sharedBytes)
      throw new AppError(
        'INVALID_MODEL',
        `package has no '${SHARED_VARIANT}' variant file and no shared model was given to verify against`,
      )
    const total = v.checks.length * (T + 2) + v.heldout.length
    let done = 0
    const c: Checking = {
      v,
      T,
      twin,
      shared: await open(sharedBytes),
      groups: [...batchesOf(v.checks, 64)].map((group) => ({
        B: group.length,
        feeds: stackExamples(
          v.inputs,
          group.map((g) => g.inputs),
          'verification',
        ),
        base: [],
      })),
      outputsOf: (out) =>
        v.outputs.map((name) => {
          const t = out[name]
          if (!t) throw new AppError('INVALID_MODEL', `verification: output '${name}' is missing`)
          return t.data as Float32Array
        }),
      tick: (n) => {
        done += n
        v.onProgress?.(done, total)
      },
    }
    const zero = await checkZeroWeights(c)
    const result: VerifyResult = {
      zeroWeightsMaxAbsDiff: zero.maxAbsDiff,
      experts: await checkOneHot(c),
      ...(await checkRouter(c)),
      variants: await checkVariants(c, pkg.variants, open),
    }
    const problems = problemsOf(result, zero.scale)
    if (problems.length > 0)
      throw new AppError(
        'INVALID_MODEL',
        `verification of the built package failed: ${problems.join('; ')}`,
      )
    return result
  } finally {
    for (const s of sessions) await s.release()
  }
}
