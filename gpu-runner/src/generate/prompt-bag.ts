/**
 * A bag-of-ids classifier of a prompt's domain (issue 14, "skip or prune the likelihood scoring"): multinomial
 * logistic regression over which token ids (and, hashed, which id bigrams) the prompt holds, evaluated in JavaScript
 * in microseconds, no onnxruntime pass. Its probabilities p [T] can route a prompt without the likelihood scoring
 * pass when it is sure, or pick the experts that pass scores (measured by bench/quality/lm-bag-probe.ts).
 *
 * Features: a presence indicator per distinct id and per hashed bigram bucket of the prompt, the row scaled to unit
 * L2 norm so that a long prompt is not more confident than a short one for having more features. Training is full-batch Adam from zero on the mean cross-entropy plus an L2 penalty,
 * in float64 and in a fixed order: no RNG, so a rebuild from the same data gives the same weights.
 * @module
 */
import { AppError } from '@twinserve/shared'

/** The feature space. */
export interface PromptBagSpec {
  /** Hashed bigram buckets (0: unigrams only). */
  bigrams: number
}

/**
 * A trained classifier: logits = x·W + b, over the features seen in training (a feature never seen has weight 0,
 * but still counts in the row's norm, as it did in training).
 */
export interface PromptBag extends PromptBagSpec {
  /** Experts (classes), T. */
  experts: number
  /** The features with weights, ascending (bagFeatures' keys). */
  keys: Int32Array
  /** [keys.length, T], row-major; float32, as the package stores them. */
  weights: Float32Array
  /** [T] */
  bias: Float32Array
}

/** A PromptBag as a package manifest carries it (shared PromptBagManifestSchema). */
export interface PromptBagFile {
  bigrams: number
  keys: number[]
  /** Base64 of the float32 weights [keys.length, T], little-endian. */
  weights: string
  bias: number[]
}

export interface PromptBagTraining {
  /** L2 penalty on the weights (not the bias), per example's mean loss. */
  l2: number
  /** Full-batch Adam steps. */
  steps: number
  /** Adam's step size. */
  lr?: number
}

/** A bigram's bucket: a multiplicative hash of the pair, fixed so that the package's weights stay meaningful. */
function bigramBucket(a: number, b: number, buckets: number): number {
  return ((Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 1, 0x85ebca6b)) >>> 0) % buckets
}

/**
 * The prompt's non-zero features, keys ascending, values with unit L2 norm. A unigram's key is its id (≥ 0), a
 * bigram's −1 − its bucket, so no vocabulary size is needed.
 */
export function bagFeatures(
  ids: readonly number[],
  spec: PromptBagSpec,
): { keys: Int32Array; val: Float64Array } {
  const set = new Set<number>()
  for (const id of ids) if (id >= 0) set.add(id)
  if (spec.bigrams > 0)
    for (let s = 0; s + 1 < ids.length; s++)
      set.add(-1 - bigramBucket(ids[s] as number, ids[s + 1] as number, spec.bigrams))
  const keys = Int32Array.from([...set].sort((a, b) => a - b))
  const val = new Float64Array(keys.length).fill(keys.length > 0 ? 1 / Math.sqrt(keys.length) : 0)
  return { keys, val }
}

function softmaxInPlace(z: Float64Array): Float64Array {
  let max = Number.NEGATIVE_INFINITY
  for (const x of z) if (x > max) max = x
  let sum = 0
  for (let i = 0; i < z.length; i++) {
    z[i] = Math.exp((z[i] as number) - max)
    sum += z[i] as number
  }
  for (let i = 0; i < z.length; i++) z[i] = (z[i] as number) / sum
  return z
}

/** Row of each key in a bag's weights (binary search: keys are sorted), −1 when the key has none. */
function rowOf(keys: Int32Array, key: number): number {
  let lo = 0
  let hi = keys.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const k = keys[mid] as number
    if (k === key) return mid
    if (k < key) lo = mid + 1
    else hi = mid - 1
  }
  return -1
}

/** The index of the largest value (the first of ties). */
export function argmax(v: ArrayLike<number>): number {
  let b = 0
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[b] as number)) b = i
  return b
}

/** p(domain | prompt ids), [T]: the logits summed in float64 over the prompt's features in key order. */
export function bagProbabilities(bag: PromptBag, ids: readonly number[]): Float64Array {
  const T = bag.experts
  const f = bagFeatures(ids, bag)
  const z = Float64Array.from(bag.bias)
  for (let k = 0; k < f.keys.length; k++) {
    const row = rowOf(bag.keys, f.keys[k] as number)
    if (row < 0) continue
    const v = f.val[k] as number
    for (let t = 0; t < T; t++) z[t] = (z[t] as number) + v * (bag.weights[row * T + t] as number)
  }
  return softmaxInPlace(z)
}

/**
 * The expert the classifier gives probability ≥ `skipAbove` for `ids` (the engine then routes the prompt to it alone,
 * unscored), or undefined when it is less sure.
 */
export function sureExpert(
  bag: PromptBag,
  ids: readonly number[],
  skipAbove: number,
): number | undefined {
  const p = bagProbabilities(bag, ids)
  const top = argmax(p)
  return (p[top] as number) >= skipAbove ? top : undefined
}

/**
 * Fits the classifier on labelled prompts (`y` the expert's index). Deterministic: zero start, full batch, the
 * examples summed in the order given, in float64; the weights are rounded to float32 at the end (what a package
 * stores, so that the probe and the runner apply the same numbers).
 */
export function trainPromptBag(
  examples: readonly { ids: readonly number[]; y: number }[],
  experts: number,
  spec: PromptBagSpec,
  training: PromptBagTraining,
): PromptBag {
  const T = experts
  const feats = examples.map((e) => bagFeatures(e.ids, spec))
  const seen = new Set<number>()
  for (const f of feats) for (const k of f.keys) seen.add(k)
  const keys = Int32Array.from([...seen].sort((a, b) => a - b))
  const D = keys.length
  // Each example's features as rows of the dense weight matrix.
  const rows = feats.map((f) => Int32Array.from(f.keys, (k) => rowOf(keys, k)))
  const w = new Float64Array(D * T)
  const b = new Float64Array(T)
  const P = D * T + T // the bias last
  const grad = new Float64Array(P)
  const m = new Float64Array(P)
  const v = new Float64Array(P)
  const lr = training.lr ?? 0.1
  const n = examples.length
  const z = new Float64Array(T)
  for (let step = 1; step <= training.steps; step++) {
    grad.fill(0)
    for (const [i, f] of feats.entries()) {
      const r = rows[i] as Int32Array
      for (let t = 0; t < T; t++) z[t] = b[t] as number
      for (let k = 0; k < r.length; k++) {
        const at = (r[k] as number) * T
        const x = f.val[k] as number
        for (let t = 0; t < T; t++) z[t] = (z[t] as number) + x * (w[at + t] as number)
      }
      const p = softmaxInPlace(z)
      const y = (examples[i] as { y: number }).y
      for (let t = 0; t < T; t++) {
        const d = ((p[t] as number) - (t === y ? 1 : 0)) / n
        grad[D * T + t] = (grad[D * T + t] as number) + d
        for (let k = 0; k < r.length; k++) {
          const at = (r[k] as number) * T + t
          grad[at] = (grad[at] as number) + d * (f.val[k] as number)
        }
      }
    }
    for (let j = 0; j < D * T; j++) grad[j] = (grad[j] as number) + training.l2 * (w[j] as number)
    const c1 = 1 - 0.9 ** step
    const c2 = 1 - 0.999 ** step
    for (let j = 0; j < P; j++) {
      const g = grad[j] as number
      m[j] = 0.9 * (m[j] as number) + 0.1 * g
      v[j] = 0.999 * (v[j] as number) + 0.001 * g * g
      const delta = (lr * ((m[j] as number) / c1)) / (Math.sqrt((v[j] as number) / c2) + 1e-8)
      if (j < D * T) w[j] = (w[j] as number) - delta
      else b[j - D * T] = (b[j - D * T] as number) - delta
    }
  }
  return {
    bigrams: spec.bigrams,
    experts: T,
    keys,
    weights: Float32Array.from(w),
    bias: Float32Array.from(b),
  }
}

/** The bag as a manifest stores it. */
export function promptBagFile(bag: PromptBag): PromptBagFile {
  const le = Buffer.alloc(bag.weights.length * 4)
  for (const [i, x] of bag.weights.entries()) le.writeFloatLE(x, i * 4)
  return {
    bigrams: bag.bigrams,
    keys: Array.from(bag.keys),
    weights: le.toString('base64'),
    bias: Array.from(bag.bias),
  }
}

/**
 * A manifest's bag for T experts.
 * @throws AppError INVALID_MODEL when its sizes do not agree (a corrupt or hand-edited manifest)
 */
export function readPromptBag(file: PromptBagFile, experts: number): PromptBag {
  const le = Buffer.from(file.weights, 'base64')
  const keys = Int32Array.from(file.keys)
  const sorted = keys.every((k, i) => i === 0 || k > (keys[i - 1] as number))
  if (le.length !== keys.length * experts * 4 || file.bias.length !== experts || !sorted)
    throw new AppError(
      'INVALID_MODEL',
      `the package's prompt bag does not fit: ${keys.length} keys${sorted ? '' : ' (not ascending)'}, ${le.length} weight bytes, ${file.bias.length} biases for ${experts} experts`,
    )
  const weights = new Float32Array(keys.length * experts)
  for (let i = 0; i < weights.length; i++) weights[i] = le.readFloatLE(i * 4)
  return { bigrams: file.bigrams, experts, keys, weights, bias: Float32Array.from(file.bias) }
}
