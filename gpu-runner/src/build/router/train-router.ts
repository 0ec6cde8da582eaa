/**
 * Trains the router on shared-model features: Twin-Merging's MLP (cross-entropy on the expert label, trained with
 * the generic ORT trainer, early stopping and restore-best on the validation split) or the data-light prototype
 * router. Accuracy is reported on the held-out split only, which nothing is selected on (the reference
 * implementation picks its checkpoint on the test split; we do not).
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging, router.py)
 * @module
 */
import type { RouterRecipe } from '@twinserve/shared'
import {
  argmaxRows,
  MlpSessions,
  type MlpWeights,
  nonZeroFraction,
  trainMlp,
} from '../../train/index.ts'
import type { Features } from './features.ts'
import { ensembleMlp } from './router-ensemble.ts'
import type { RouterModel, Standardizer } from './router-graph.ts'

/** Input density under which a linear router trains over the non-zeros (TrainMlpOptions.sparse). */
const SPARSE_BELOW = 0.05

export interface TrainedRouter {
  model: RouterModel
  /** Accuracy on the held-out split (argmax of the router's weights = the example's expert). */
  heldoutAccuracy: number
  /** Predicted expert per held-out example (to check the embedded router against). */
  heldoutPredictions: Int32Array
  /** The MLP's logits on the held-out split, [n, T] (a probe softens or sharpens the mix with them). */
  heldoutLogits?: Float32Array
  epochs?: number
  bestEpoch?: number
}

/** @param rawFrom columns from here on keep mean 0, std 1 (a tf-idf bag, already scaled per text) */
export function fitStandardizer(f: Features, rawFrom = f.d): Standardizer {
  const { x, d } = f
  const n = x.length / d
  const mean = new Float64Array(d)
  const sq = new Float64Array(d)
  // Columns from rawFrom on get mean 0 and std 1 whatever their statistics: only the others are summed.
  const fit = Math.min(d, rawFrom)
  for (let i = 0; i < n; i++)
    for (let j = 0; j < fit; j++) mean[j] = (mean[j] as number) + (x[i * d + j] as number)
  for (let j = 0; j < fit; j++) mean[j] = (mean[j] as number) / n
  for (let i = 0; i < n; i++)
    for (let j = 0; j < fit; j++) {
      const c = (x[i * d + j] as number) - (mean[j] as number)
      sq[j] = (sq[j] as number) + c * c
    }
  // A constant feature (dead ReLU unit) has std 0: dividing by 1 keeps it at 0 instead of NaN.
  const std = Float32Array.from(sq, (s, j) => {
    const v = Math.sqrt(s / n)
    return v > 1e-6 && j < rawFrom ? v : 1
  })
  return { mean: Float32Array.from(mean, (m, j) => (j < rawFrom ? m : 0)), std }
}

export function standardize(f: Features, s: Standardizer): Float32Array {
  const { x, d } = f
  const out = x.slice()
  // (v − 0) / 1 = v: a column with mean 0 and std 1 (a tf-idf bag's, 13,191 of the text router's 13,255) is
  // copied as it is.
  const cols: number[] = []
  for (let j = 0; j < d; j++) if (s.mean[j] !== 0 || s.std[j] !== 1) cols.push(j)
  for (let base = 0; base < x.length; base += d)
    for (const j of cols)
      out[base + j] = ((x[base + j] as number) - (s.mean[j] as number)) / (s.std[j] as number)
  return out
}

function accuracy(pred: Int32Array, y: Int32Array): number {
  let ok = 0
  for (let i = 0; i < y.length; i++) if (pred[i] === y[i]) ok++
  return y.length === 0 ? 0 : ok / y.length
}

/** Prototype router: unit-norm mean standardised feature per expert, as a [d, T] matrix. */
export function prototypeRouter(
  train: Features,
  s: Standardizer,
  experts: number,
  temperature: number,
): Extract<RouterModel, { kind: 'prototype' }> {
  const z = standardize(train, s)
  const d = train.d
  const P = new Float64Array(d * experts) // [d, T]
  const counts = new Float64Array(experts)
  for (let i = 0; i < train.y.length; i++) {
    const e = train.y[i] as number
    counts[e] = (counts[e] as number) + 1
    for (let j = 0; j < d; j++)
      P[j * experts + e] = (P[j * experts + e] as number) + (z[i * d + j] as number)
  }
  for (let e = 0; e < experts; e++) {
    let norm = 0
    for (let j = 0; j < d; j++) norm += (P[j * experts + e] as number) ** 2
    norm = Math.sqrt(norm) || 1
    for (let j = 0; j < d; j++) P[j * experts + e] = (P[j * experts + e] as number) / norm
  }
  return { kind: 'prototype', standardizer: s, prototypes: Float32Array.from(P), temperature }
}

/** Argmax of cosine similarity to each prototype (the softmax does not change the argmax). */
function prototypePredict(r: Extract<RouterModel, { kind: 'prototype' }>, f: Features): Int32Array {
  const z = standardize(f, r.standardizer)
  const d = f.d
  const T = r.prototypes.length / d
  const n = f.y.length
  const scores = new Float32Array(n * T)
  for (let i = 0; i < n; i++)
    for (let e = 0; e < T; e++) {
      let s = 0
      for (let j = 0; j < d; j++)
        s += (z[i * d + j] as number) * (r.prototypes[j * T + e] as number)
      scores[i * T + e] = s
    }
  return argmaxRows(scores, T)
}

/**
 * softmax(logits / τ) as the MLP's own softmax: its last layer's weights and bias divided by τ, so the graph and
 * the argmax are unchanged and only the mix's sharpness moves.
 */
export function withTemperature(w: MlpWeights, tau: number): MlpWeights {
  if (tau === 1) return w
  const last = w.layers.length - 1
  return {
    ...w,
    layers: w.layers.map((l, i) =>
      i === last
        ? { ...l, weight: l.weight.map((x) => x / tau), bias: l.bias.map((x) => x / tau) }
        : l,
    ),
  }
}

export async function trainRouter(
  recipe: RouterRecipe,
  data: { train: Features; validation: Features; heldout: Features },
  experts: number,
  opts: {
    onEpoch?: (epoch: number, valAccuracy: number | undefined) => void
    /** Columns from here on are not standardised (fitStandardizer). */
    rawFrom?: number
  } = {},
): Promise<TrainedRouter> {
  if (recipe.kind === 'data-free')
    throw new Error(
      'the data-free router is built from the factors (data-free-router.ts), not trained',
    )
  const s = fitStandardizer(data.train, opts.rawFrom)
  if (recipe.kind === 'prototype') {
    // The prototype router needs no validation data: its means come from train and validation together.
    const x = new Float32Array(data.train.x.length + data.validation.x.length)
    x.set(data.train.x)
    x.set(data.validation.x, data.train.x.length)
    const y = new Int32Array(data.train.y.length + data.validation.y.length)
    y.set(data.train.y)
    y.set(data.validation.y, data.train.y.length)
    const both: Features = { x, y, d: data.train.d }
    const model = prototypeRouter(both, s, experts, recipe.temperature)
    const heldoutPredictions = prototypePredict(model, data.heldout)
    return {
      model,
      heldoutAccuracy: accuracy(heldoutPredictions, data.heldout.y),
      heldoutPredictions,
    }
  }
  const layers = [data.train.d, ...recipe.hidden, experts]
  const sessions = await MlpSessions.open(layers, { provider: 'cpu' })
  try {
    const x = standardize(data.train, s)
    const valX = standardize(data.validation, s)
    const heldX = standardize(data.heldout, s)
    // A linear router over a bag of tokens sees rows of mostly zeros (the text zoo's: under 1% of 13,255
    // columns): its layer then runs over the non-zeros, with the same bits as the dense graph.
    const sparse = layers.length === 2 && nonZeroFraction(x) < SPARSE_BELOW
    const members: MlpWeights[] = []
    let epochs = 0
    let bestEpoch = 0
    // `ensemble` routers from consecutive seeds; their mean logits are one MLP's (router-ensemble.ts).
    for (let k = 0; k < recipe.ensemble; k++) {
      const result = await trainMlp({
        layers,
        x,
        y: data.train.y,
        valX,
        valY: data.validation.y,
        epochs: recipe.epochs,
        lr: recipe.lr,
        batchSize: recipe.batch_size,
        seed: recipe.seed + k,
        patience: recipe.patience,
        weightDecay: recipe.weight_decay,
        sessions,
        sparse,
        onEpoch: (r) => opts.onEpoch?.(k * recipe.epochs + r.epoch, r.valAccuracy),
      })
      members.push(result.weights)
      epochs = Math.max(epochs, result.history.length)
      bestEpoch = Math.max(bestEpoch, result.bestEpoch)
    }
    const weights = withTemperature(ensembleMlp(members), recipe.mlp_temperature ?? 1)
    // The held-out logits as the ensemble computes them: the members' mean (the merged MLP's own sizes differ
    // from the training sessions' when there are hidden layers).
    const T = experts
    const logits = new Float32Array((heldX.length / data.train.d) * T)
    for (const m of members) {
      const l = await sessions.logits(withTemperature(m, recipe.mlp_temperature ?? 1), heldX)
      for (let i = 0; i < logits.length; i++)
        logits[i] = (logits[i] as number) + (l[i] as number) / members.length
    }
    const heldoutPredictions = argmaxRows(logits, experts)
    return {
      model: { kind: 'mlp', standardizer: s, mlp: weights },
      heldoutAccuracy: accuracy(heldoutPredictions, data.heldout.y),
      heldoutPredictions,
      heldoutLogits: logits,
      epochs,
      bestEpoch,
    }
  } finally {
    await sessions.release()
  }
}
