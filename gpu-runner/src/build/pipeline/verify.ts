/**
 * End-of-build verification on the package as written: every file listed in the manifest is read back and
 * checked against its sha256 (streamed), then, with one onnxruntime session open at a time (the shared model, the
 * twin graph, each expert, each variant: several BERT-base-sized sessions at once would hold gigabytes),
 * - all-zero weights must reproduce the shared model (the package's `shared` variant file when it has one, else
 *   the shared merge as the builder holds it in memory): exactly in principle, the max |Δ| is reported, and
 *   float32 rounding, 1e-5 relative, is tolerated for graphs onnxruntime fuses differently;
 * - a one-hot row for expert t is compared with expert t's own ONNX model (max |Δ| reported: the compression
 *   error, 0 up to float rounding at full rank), next to how far expert t is from the shared model, on the check
 *   inputs of t's block of experts (CHECK_BLOCK: t's own and up to 7 others', so every check input with 8 experts
 *   or fewer): checking every expert on every expert's inputs would cost T² forward passes, the bulk of a build at
 *   T = 64 (issue #18);
 * - the embedded router, run on the held-out routing examples, must agree with the router as trained;
 * - every variant must load and give finite outputs.
 * @module
 */
import { join } from 'node:path'
import {
  AppError,
  type PackageManifest,
  ROUTED_WEIGHT_THRESHOLD,
  type RoutingProfile,
  SHARED_VARIANT,
  TWIN_OUTPUT_WEIGHTS,
} from '@twinserve/shared'
import { readManifest, sha256File } from '../../package/load-package.ts'
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
   * The shared model as a plain graph file, for packages without a `shared` variant file (recipe `shared_file:
   * false`); a package that has the file is checked against the file.
   */
  shared?: string
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
  /** The embedded router's distribution on the held-out rows (absent when there are none): the drift baseline. */
  routingProfile?: RoutingProfile
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

/**
 * Experts per block of the one-hot checks: expert t's one-hot rows run on the check inputs of the experts
 * ⌊t / CHECK_BLOCK⌋·CHECK_BLOCK … + CHECK_BLOCK − 1. The checks then cost T·CHECK_BLOCK·examples_per_expert
 * forward passes of the twin graph and as many of the experts, linear in T; with T ≤ CHECK_BLOCK, one block, every
 * expert is checked on every check input, as before blocks.
 */
export const CHECK_BLOCK = 8

/** One batch of check inputs, all from one block of experts, with the outputs collected so far. */
interface CheckGroup {
  B: number
  feeds: Feeds
  /** The experts whose one-hot rows run on this batch (its block). */
  experts: number[]
  shared: Float32Array[]
  /** By expert index; set for the group's experts only. */
  oneHot: Float32Array[][]
}

/** The check inputs in batches of at most 64, each within one block of CHECK_BLOCK experts (in input order). */
function checkGroups(v: VerifyInput, T: number): CheckGroup[] {
  const blocks = Math.max(1, Math.ceil(T / CHECK_BLOCK))
  const groups: CheckGroup[] = []
  for (let b = 0; b < blocks; b++) {
    const first = b * CHECK_BLOCK
    const experts = Array.from({ length: Math.min(CHECK_BLOCK, T - first) }, (_, i) => first + i)
    // One block holds every check input; a block whose experts have none checks them on every input.
    const own = blocks === 1 ? [] : v.checks.filter((x) => Math.floor(x.expert / CHECK_BLOCK) === b)
    const inBlock = own.length > 0 ? own : v.checks
    for (const group of batchesOf(inBlock, 64))
      groups.push({
        B: group.length,
        feeds: stackExamples(
          v.inputs,
          group.map((g) => g.inputs),
          'verification',
        ),
        experts,
        shared: [],
        oneHot: [],
      })
  }
  return groups
}

/** What the checks share: the check inputs in batches with the outputs collected so far, progress. */
interface Checking {
  v: VerifyInput
  T: number
  groups: CheckGroup[]
  outputsOf: (out: ort.InferenceSession.OnnxValueMapType) => Float32Array[]
  tick: (n: number) => void
}

/** Opens one session on a file, runs `fn`, releases it. */
async function withSession<R>(path: string, fn: (s: Session) => Promise<R>): Promise<R> {
  const { session } = await openSession(path, { provider: 'cpu' })
  try {
    return await fn(session)
  } finally {
    await session.release()
  }
}

/** Every row with the same controls. */
const rowsOf = (B: number, T: number, row: RowControls) => encodeControls(Array(B).fill(row), T)

/**
 * The twin graph's checks in one session: all-zero weights against the shared outputs, one-hot rows for each
 * expert (kept for the experts' sessions), and the embedded router on the held-out examples.
 */
async function checkTwin(
  c: Checking,
  twin: Session,
): Promise<{ zero: { maxAbsDiff: number; scale: number } } & RouterResult> {
  let zeroDiff = 0
  let scale = 0
  for (const g of c.groups) {
    const zero = c.outputsOf(await twin.run({ ...g.feeds, ...rowsOf(g.B, c.T, {}) }))
    zero.forEach((z, i) => {
      zeroDiff = Math.max(zeroDiff, maxAbsDiff(z, g.shared[i] as Float32Array))
      for (const y of g.shared[i] as Float32Array) scale = Math.max(scale, Math.abs(y))
    })
    for (const t of g.experts) {
      const mixWeights = Array.from({ length: c.T }, (_, j) => (j === t ? 1 : 0))
      g.oneHot[t] = c.outputsOf(await twin.run({ ...g.feeds, ...rowsOf(g.B, c.T, { mixWeights }) }))
    }
    c.tick(g.B * (1 + g.experts.length))
  }
  return { zero: { maxAbsDiff: zeroDiff, scale }, ...(await checkRouter(c, twin)) }
}

/** Each expert's own model against the twin graph's one-hot rows, next to how far it is from the shared model. */
async function checkExperts(c: Checking): Promise<ExpertCheck[]> {
  const out: ExpertCheck[] = []
  for (const [t, e] of c.v.experts.entries()) {
    let oneHot = 0
    let gap = 0
    await withSession(e.path, async (expert) => {
      for (const g of c.groups) {
        if (!g.experts.includes(t)) continue
        const expertT = c.outputsOf(await expert.run(g.feeds))
        expertT.forEach((y, i) => {
          oneHot = Math.max(oneHot, maxAbsDiff(g.oneHot[t]?.[i] ?? new Float32Array(), y))
          gap = Math.max(gap, maxAbsDiff(g.shared[i] as Float32Array, y))
        })
        c.tick(g.B)
      }
    })
    out.push({ name: e.name, oneHotMaxAbsDiff: oneHot, sharedMaxAbsDiff: gap })
  }
  return out
}

type RouterResult = Pick<
  VerifyResult,
  'routerHeldoutAccuracy' | 'routerAgreement' | 'routerSumError' | 'routingProfile'
>

/** The embedded router on the held-out examples, against the router as trained and the true experts. */
async function checkRouter(c: Checking, twin: Session): Promise<RouterResult> {
  const { v, T } = c
  let agree = 0
  let correct = 0
  let sumError = 0
  let offset = 0
  const weightSum = new Float64Array(T)
  const routedRows = new Float64Array(T)
  for (const group of batchesOf(v.heldout, 256)) {
    const B = group.length
    const feeds = stackExamples(
      v.inputs,
      group.map((g) => g.inputs),
      'verification',
    )
    const out = await twin.run({ ...feeds, ...rowsOf(B, T, { useRouter: 1 }) })
    const w = out[TWIN_OUTPUT_WEIGHTS]?.data as Float32Array
    const picked = argmaxRows(w, T)
    for (let r = 0; r < B; r++) {
      if (picked[r] === v.heldoutPredictions[offset + r]) agree++
      if (picked[r] === group[r]?.expert) correct++
      let s = 0
      for (let t = 0; t < T; t++) {
        const x = w[r * T + t] as number
        s += x
        weightSum[t] = (weightSum[t] as number) + x
        if (x > ROUTED_WEIGHT_THRESHOLD) routedRows[t] = (routedRows[t] as number) + 1
      }
      sumError = Math.max(sumError, Math.abs(s - 1))
    }
    offset += B
    c.tick(B)
  }
  return {
    routerHeldoutAccuracy: v.heldout.length ? correct / v.heldout.length : 0,
    routerAgreement: v.heldout.length ? agree / v.heldout.length : 1,
    routerSumError: sumError,
    ...(offset > 0
      ? {
          routingProfile: {
            rows: offset,
            // Clamped: float32 sums can exceed 1 by a rounding error.
            meanWeight: Array.from(weightSum, (x) => Math.min(1, x / offset)),
            trafficShare: Array.from(routedRows, (x) => x / offset),
          },
        }
      : {}),
  }
}

/** Every variant loads and gives finite outputs on the first check inputs. */
async function checkVariants(
  c: Checking,
  variants: ReadonlyMap<string, string>,
): Promise<VerifyResult['variants']> {
  const out: VerifyResult['variants'] = []
  if (variants.size === 0) return out
  // The first check inputs of one shape (prompts of a decoder differ in length).
  const first: RoutingExample[] = batchesOf(c.v.checks, 8).next().value ?? []
  const feeds = stackExamples(
    c.v.inputs,
    first.map((g) => g.inputs),
    'verification',
  )
  for (const [name, path] of variants) {
    const outputs = await withSession(path, async (s) => c.outputsOf(await s.run(feeds)))
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

/** The manifest, after every file it lists is read back and matches its sha256. */
async function checkedManifest(dir: string): Promise<PackageManifest> {
  const manifest = await readManifest(dir)
  for (const [rel, expected] of Object.entries(manifest.files)) {
    let actual: string
    try {
      actual = await sha256File(join(dir, rel))
    } catch (err) {
      throw new AppError(
        'INVALID_MODEL',
        `package ${dir}: file ${rel} listed in the manifest is missing`,
        {
          cause: err,
        },
      )
    }
    if (actual !== expected)
      throw new AppError('INVALID_MODEL', `package ${dir}: file ${rel} does not match its sha256`)
  }
  return manifest
}

export async function verifyPackage(v: VerifyInput): Promise<VerifyResult> {
  const manifest = await checkedManifest(v.dir)
  const T = manifest.experts.length
  const variants = new Map(manifest.variants.map((x) => [x.name, join(v.dir, x.file)]))
  const sharedPath = variants.get(SHARED_VARIANT) ?? v.shared
  if (!sharedPath)
    throw new AppError(
      'INVALID_MODEL',
      `package has no '${SHARED_VARIANT}' variant file and no shared model was given to verify against`,
    )
  const groups = checkGroups(v, T)
  // Per group: zero weights, and each of its experts twice (its one-hot rows, its own model).
  const total = groups.reduce((n, g) => n + g.B * (1 + 2 * g.experts.length), 0) + v.heldout.length
  let done = 0
  const c: Checking = {
    v,
    T,
    groups,
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
  await withSession(sharedPath, async (shared) => {
    for (const g of c.groups) g.shared = c.outputsOf(await shared.run(g.feeds))
  })
  const twin = await withSession(join(v.dir, manifest.model.file), (s) => checkTwin(c, s))
  const result: VerifyResult = {
    zeroWeightsMaxAbsDiff: twin.zero.maxAbsDiff,
    experts: await checkExperts(c),
    routerHeldoutAccuracy: twin.routerHeldoutAccuracy,
    routerAgreement: twin.routerAgreement,
    routerSumError: twin.routerSumError,
    ...(twin.routingProfile ? { routingProfile: twin.routingProfile } : {}),
    variants: await checkVariants(c, variants),
  }
  const problems = problemsOf(result, twin.zero.scale)
  if (problems.length > 0)
    throw new AppError(
      'INVALID_MODEL',
      `verification of the built package failed: ${problems.join('; ')}`,
    )
  return result
}
