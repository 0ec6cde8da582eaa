/**
 * A bag-of-ids classifier of a prompt's domain (issue 14, "skip or prune the likelihood scoring"): multinomial
 * logistic regression over which token ids (and, hashed, which id bigrams) the prompt holds, evaluated in JavaScript
 * in microseconds, no onnxruntime pass. Its probabilities p [T] can route a prompt without the likelihood scoring
 * pass when it is sure, or pick the experts that pass scores (measured by bench/quality/lm-bag-probe.ts).
 *
 * Features: a presence indicator per distinct unigram id (columns 0…vocab−1) and per hashed bigram bucket (columns
 * vocab…vocab+bigrams−1), the row scaled to unit L2 norm so that a long prompt is not more confident than a short
 * one for having more features. Training is full-batch Adam from zero on the mean cross-entropy plus an L2 penalty,
 * in float64 and in a fixed order: no RNG, so a rebuild from the same data gives the same weights.
 * @module
 */

/** The feature space. */
export interface PromptBagSpec {
  /** Unigram columns: ids ≥ vocab are dropped. */
  vocab: number
  /** Hashed bigram buckets (0: unigrams only). */
  bigrams: number
}

/** A trained classifier: logits = x·W + b. */
export interface PromptBag extends PromptBagSpec {
  /** Experts (classes), T. */
  experts: number
  /** [vocab + bigrams, T], row-major. */
  weights: Float64Array
  /** [T] */
  bias: Float64Array
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

/** The prompt's non-zero features, columns ascending, values with unit L2 norm. */
export function bagFeatures(
  ids: readonly number[],
  spec: PromptBagSpec,
): { col: Int32Array; val: Float64Array } {
  const cols = new Set<number>()
  for (const id of ids) if (id >= 0 && id < spec.vocab) cols.add(id)
  if (spec.bigrams > 0)
    for (let s = 0; s + 1 < ids.length; s++)
      cols.add(spec.vocab + bigramBucket(ids[s] as number, ids[s + 1] as number, spec.bigrams))
  const col = Int32Array.from([...cols].sort((a, b) => a - b))
  const val = new Float64Array(col.length).fill(col.length > 0 ? 1 / Math.sqrt(col.length) : 0)
  return { col, val }
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

function logitsOf(
  bag: PromptBag,
  f: { col: Int32Array; val: Float64Array },
  out = new Float64Array(bag.experts),
) {
  const T = bag.experts
  for (let t = 0; t < T; t++) out[t] = bag.bias[t] as number
  for (let k = 0; k < f.col.length; k++) {
    const at = (f.col[k] as number) * T
    const v = f.val[k] as number
    for (let t = 0; t < T; t++) out[t] = (out[t] as number) + v * (bag.weights[at + t] as number)
  }
  return out
}

/** p(domain | prompt ids), [T]. */
export function bagProbabilities(bag: PromptBag, ids: readonly number[]): Float64Array {
  return softmaxInPlace(logitsOf(bag, bagFeatures(ids, bag)))
}

/**
 * Fits the classifier on labelled prompts (`y` the expert's index). Deterministic: zero start, full batch, the
 * examples summed in the order given.
 */
export function trainPromptBag(
  examples: readonly { ids: readonly number[]; y: number }[],
  experts: number,
  spec: PromptBagSpec,
  training: PromptBagTraining,
): PromptBag {
  const T = experts
  const D = spec.vocab + spec.bigrams
  const bag: PromptBag = {
    ...spec,
    experts: T,
    weights: new Float64Array(D * T),
    bias: new Float64Array(T),
  }
  const feats = examples.map((e) => bagFeatures(e.ids, spec))
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
      const p = softmaxInPlace(logitsOf(bag, f, z))
      const y = (examples[i] as { y: number }).y
      for (let t = 0; t < T; t++) {
        const d = ((p[t] as number) - (t === y ? 1 : 0)) / n
        grad[D * T + t] = (grad[D * T + t] as number) + d
        for (let k = 0; k < f.col.length; k++) {
          const at = (f.col[k] as number) * T + t
          grad[at] = (grad[at] as number) + d * (f.val[k] as number)
        }
      }
    }
    for (let j = 0; j < D * T; j++)
      grad[j] = (grad[j] as number) + training.l2 * (bag.weights[j] as number)
    const c1 = 1 - 0.9 ** step
    const c2 = 1 - 0.999 ** step
    for (let j = 0; j < P; j++) {
      const g = grad[j] as number
      m[j] = 0.9 * (m[j] as number) + 0.1 * g
      v[j] = 0.999 * (v[j] as number) + 0.001 * g * g
      const delta = (lr * ((m[j] as number) / c1)) / (Math.sqrt((v[j] as number) / c2) + 1e-8)
      if (j < D * T) bag.weights[j] = (bag.weights[j] as number) - delta
      else bag.bias[j - D * T] = (bag.bias[j - D * T] as number) - delta
    }
  }
  return bag
}
