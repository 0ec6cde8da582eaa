/**
 * A generic, deterministic MLP trainer: softmax cross-entropy, forward/backward in onnxruntime (one session for
 * every step, weights fed as inputs), Adam or SGD+momentum in JS, seeded init and shuffling, mini-batches,
 * per-epoch validation with early stopping and restore-best. Used for the model zoo (base pretraining and expert
 * fine-tuning) and reusable for any classifier over flat float features (e.g. the twin package's router).
 * @module
 */
import { AppError } from '@twinserve/shared'
import {
  checkSizes,
  checkWeights,
  cloneMlp,
  initMlp,
  type MlpLayer,
  type MlpWeights,
} from './mlp.ts'
import {
  type Evaluation,
  LOGITS_CHUNK,
  type LossAndGradients,
  type MlpSessionOptions,
  MlpSessions,
  scoreLogits,
} from './mlp-sessions.ts'
import {
  type AdamOptions,
  createAdam,
  createSgd,
  type Optimizer,
  type ParamSlot,
} from './optimizer.ts'
import { createRng, mixSeed, permutation } from './rng.ts'
import {
  type SparseRows,
  sgemmStrideK,
  sparseLinearForward,
  sparseLinearWeightGrad,
  toSparseRows,
} from './sparse-linear.ts'

export interface TrainMlpOptions extends MlpSessionOptions {
  /** Layer widths, input to output, e.g. [784, 256, 128, 10]. */
  layers: readonly number[]
  /** Start from these weights (fine-tuning; all weights are trained). Copied, never mutated. Default: seeded He init. */
  init?: MlpWeights
  /** [n, layers[0]] row-major */
  x: Float32Array
  /** [n] class ids in [0, classes) */
  y: Int32Array
  /** Validation split for early stopping and restore-best. */
  valX?: Float32Array
  valY?: Int32Array
  epochs: number
  lr: number
  batchSize: number
  seed: number
  optimizer?: 'adam' | 'sgd'
  /** Adam's betas/eps and (decoupled) weight decay; for SGD only weightDecay and momentum apply. */
  adam?: AdamOptions
  momentum?: number
  weightDecay?: number
  /** 'cosine' decays lr to 0 over all planned steps (epochs x batches). Default 'constant'. */
  lrSchedule?: 'constant' | 'cosine'
  /** Stop after this many epochs without improvement on the validation set (needs valX/valY). */
  patience?: number
  /** What "improvement" means for early stopping and restore-best. Default 'accuracy' (ties: lower loss). */
  monitor?: 'loss' | 'accuracy'
  /** Called after each epoch, e.g. for progress logs. */
  onEpoch?: (record: EpochRecord) => void
  /** Reuse open sessions for this shape (e.g. across a zoo); otherwise opened and released here. */
  sessions?: MlpSessions
  /**
   * Compute the linear layer of a one-layer MLP (layers [in, classes]) in JS over the non-zeros of x and valX
   * (sparse-linear.ts), the loss in onnxruntime: the same bits as the training graph on CPU, in much less time
   * when the rows are mostly zeros. Needs CPU sessions and batchSize ≤ sgemmStrideK(classes).
   */
  sparse?: boolean
}

export interface EpochRecord {
  epoch: number
  /** Mean training loss over the epoch's batches (weights changing along the way). */
  trainLoss: number
  trainAccuracy: number
  valLoss?: number
  valAccuracy?: number
  /** Learning rate at the epoch's last step. */
  lr: number
  /** Wall time of the epoch including validation; not reproducible, unlike everything else here. */
  ms: number
}

export interface TrainMlpResult {
  /** The best weights by `monitor` on validation (the last ones without validation). */
  weights: MlpWeights
  history: EpochRecord[]
  /** 1-based epoch the returned weights come from. */
  bestEpoch: number
  steps: number
  stoppedEarly: boolean
  elapsedMs: number
}

function invalid(message: string): AppError {
  return new AppError('INVALID_REQUEST', `trainMlp: ${message}`)
}

function checkData(name: string, x: Float32Array, y: Int32Array, d: number, c: number): void {
  if (x.length !== y.length * d)
    throw invalid(
      `${name}: x has ${x.length} values, expected ${y.length} rows x ${d} = ${y.length * d}`,
    )
  for (let i = 0; i < y.length; i++) {
    const label = y[i] as number
    if (label < 0 || label >= c)
      throw invalid(`${name}: label y[${i}] = ${label} is not in [0, ${c})`)
  }
  for (let i = 0; i < x.length; i++)
    if (!Number.isFinite(x[i]))
      throw invalid(`${name}: x[${Math.floor(i / d)}, ${i % d}] is ${x[i]}, not a finite number`)
}

function checkOptions(o: TrainMlpOptions): void {
  checkSizes(o.layers)
  const positiveInt = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw invalid(`${name} must be a positive integer, got ${v}`)
  }
  positiveInt('epochs', o.epochs)
  positiveInt('batchSize', o.batchSize)
  if (o.patience !== undefined) positiveInt('patience', o.patience)
  if (!(o.lr > 0) || !Number.isFinite(o.lr))
    throw invalid(`lr must be a positive number, got ${o.lr}`)
  if (!Number.isInteger(o.seed)) throw invalid(`seed must be an integer, got ${o.seed}`)
  if (o.y.length === 0) throw invalid('no training examples')
  if ((o.valX === undefined) !== (o.valY === undefined))
    throw invalid('valX and valY must be given together')
  if (o.patience !== undefined && o.valY === undefined)
    throw invalid('early stopping (patience) needs a validation split (valX, valY)')
  const d = o.layers[0] as number
  const c = o.layers[o.layers.length - 1] as number
  checkData('training data', o.x, o.y, d, c)
  if (o.valX && o.valY) checkData('validation data', o.valX, o.valY, d, c)
  if (o.sessions && o.sessions.sizes.join() !== o.layers.join())
    throw invalid(`sessions are for layers [${o.sessions.sizes}], not [${o.layers}]`)
  if (o.sparse) {
    if (o.layers.length !== 2)
      throw invalid(`sparse training is for a one-layer MLP, not layers [${o.layers}]`)
    if (o.batchSize > sgemmStrideK(c))
      throw invalid(
        `sparse training takes batches of at most ${sgemmStrideK(c)} rows for ${c} classes`,
      )
  }
}

/** The sparse path's inputs (TrainMlpOptions.sparse). */
interface SparseInputs {
  x: SparseRows
  val: SparseRows | undefined
  /** [in, classes], overwritten every step. */
  weightGrad: Float32Array
}

function sparseInputs(o: TrainMlpOptions, sessions: MlpSessions): SparseInputs {
  if (sessions.provider !== 'cpu')
    throw invalid(
      `sparse training reproduces onnxruntime's CPU kernels, not ${sessions.provider}'s`,
    )
  const d = sessions.inputSize
  return {
    x: toSparseRows(o.x, d),
    val: o.valX ? toSparseRows(o.valX, d) : undefined,
    weightGrad: new Float32Array(d * sessions.classes),
  }
}

/** One step's loss and gradients on the rows `batch` of x, the linear layer over their non-zeros. */
async function sparseLossAndGradients(
  sessions: MlpSessions,
  sp: SparseInputs,
  w: MlpWeights,
  batch: Int32Array,
  targets: Float32Array,
): Promise<LossAndGradients> {
  const c = sessions.classes
  const layer = w.layers[0] as MlpLayer
  const logits = new Float32Array(batch.length * c)
  sparseLinearForward(sp.x, batch, layer.weight, layer.bias, c, logits)
  const head = await sessions.lossHead(logits, targets)
  sparseLinearWeightGrad(sp.x, batch, head.dLogits, c, sp.weightGrad)
  return { loss: head.loss, logits, grads: [{ weight: sp.weightGrad, bias: head.biasGrad }] }
}

/**
 * sessions.evaluate over the non-zeros of valX. The forward graph runs in chunks of LOGITS_CHUNK rows: a chunk of
 * one row takes MLAS's one-row kernel, so that row goes through the graph.
 */
async function sparseEvaluate(
  sessions: MlpSessions,
  val: SparseRows,
  valX: Float32Array,
  valY: Int32Array,
  w: MlpWeights,
): Promise<Evaluation> {
  const c = sessions.classes
  const layer = w.layers[0] as MlpLayer
  const n = val.n
  const lone = n % LOGITS_CHUNK === 1 ? 1 : 0
  const logits = new Float32Array(n * c)
  const rows = Int32Array.from({ length: n - lone }, (_, i) => i)
  if (rows.length > 0) sparseLinearForward(val, rows, layer.weight, layer.bias, c, logits)
  if (lone) logits.set(await sessions.logits(w, valX.subarray((n - 1) * val.d)), (n - 1) * c)
  return scoreLogits(logits, valY, c)
}

function isBetter(
  monitor: 'loss' | 'accuracy',
  cur: { loss: number; accuracy: number },
  best: { loss: number; accuracy: number } | undefined,
): boolean {
  if (!best) return true
  if (monitor === 'loss') return cur.loss < best.loss
  return cur.accuracy > best.accuracy || (cur.accuracy === best.accuracy && cur.loss < best.loss)
}

/**
 * Trains an MLP classifier. Deterministic: the same options (and thread count, on the same machine) give
 * bit-identical weights.
 * @example
 * const { weights, history } = await trainMlp({
 *   layers: [784, 256, 128, 10], x, y, valX, valY, epochs: 5, lr: 1e-3, batchSize: 128, seed: 1, patience: 2,
 * })
 */
export async function trainMlp(o: TrainMlpOptions): Promise<TrainMlpResult> {
  checkOptions(o)
  const started = performance.now()
  const d = o.layers[0] as number
  const c = o.layers[o.layers.length - 1] as number
  const n = o.y.length
  let weights: MlpWeights
  if (o.init) {
    checkWeights(o.init, o.layers)
    weights = cloneMlp(o.init)
  } else weights = initMlp(o.layers, mixSeed(o.seed, 1))

  const slots: ParamSlot[] = weights.layers.flatMap((l) => [
    { data: l.weight, decay: true },
    { data: l.bias, decay: false },
  ])
  const lengths = slots.map((s) => s.data.length)
  const wd = o.weightDecay ?? 0
  const optimizer: Optimizer =
    (o.optimizer ?? 'adam') === 'adam'
      ? createAdam(lengths, { ...o.adam, weightDecay: o.adam?.weightDecay ?? wd })
      : createSgd(lengths, {
          weightDecay: wd,
          ...(o.momentum === undefined ? {} : { momentum: o.momentum }),
        })

  const sessions = o.sessions ?? (await MlpSessions.open(o.layers, o))
  const sp = o.sparse ? sparseInputs(o, sessions) : undefined
  const shuffleRng = createRng(mixSeed(o.seed, 2))
  const batchesPerEpoch = Math.ceil(n / o.batchSize)
  const totalSteps = batchesPerEpoch * o.epochs
  const monitor = o.monitor ?? 'accuracy'
  const xb = new Float32Array(o.batchSize * d) // [batch, d]
  const tb = new Float32Array(o.batchSize * c) // [batch, c] one-hot
  const yb = new Int32Array(o.batchSize)
  const history: EpochRecord[] = []
  let best: { loss: number; accuracy: number } | undefined
  let bestWeights = weights
  let bestEpoch = 0
  let sinceBest = 0
  let steps = 0
  let stoppedEarly = false
  try {
    for (let epoch = 1; epoch <= o.epochs; epoch++) {
      const t0 = performance.now()
      const order = permutation(n, shuffleRng)
      let lossSum = 0
      let correct = 0
      let lr = o.lr
      for (let start = 0; start < n; start += o.batchSize) {
        const rows = Math.min(o.batchSize, n - start)
        tb.fill(0, 0, rows * c)
        // A one-row batch takes MLAS's one-row kernel (sparse-linear.ts): the graph computes it.
        const dense = !sp || rows === 1
        for (let r = 0; r < rows; r++) {
          const src = order[start + r] as number
          if (dense) xb.set(o.x.subarray(src * d, (src + 1) * d), r * d)
          const label = o.y[src] as number
          yb[r] = label
          tb[r * c + label] = 1
        }
        const res = dense
          ? await sessions.lossAndGradients(
              weights,
              xb.subarray(0, rows * d),
              tb.subarray(0, rows * c),
            )
          : await sparseLossAndGradients(
              sessions,
              sp,
              weights,
              order.subarray(start, start + rows),
              tb.subarray(0, rows * c),
            )
        if (!Number.isFinite(res.loss))
          throw new AppError(
            'INVALID_MODEL',
            `trainMlp: loss became ${res.loss} at epoch ${epoch}, step ${steps + 1}; lower the learning rate`,
          )
        const s = scoreLogits(res.logits, yb.subarray(0, rows), c)
        lossSum += res.loss * rows
        correct += s.accuracy * rows
        lr =
          o.lrSchedule === 'cosine'
            ? 0.5 * o.lr * (1 + Math.cos((Math.PI * steps) / totalSteps))
            : o.lr
        optimizer.step(
          slots,
          res.grads.flatMap((g) => [g.weight, g.bias]),
          lr,
        )
        steps++
      }
      const record: EpochRecord = {
        epoch,
        trainLoss: lossSum / n,
        trainAccuracy: Math.round(correct) / n,
        lr,
        ms: 0,
      }
      if (o.valX && o.valY) {
        const v = sp?.val
          ? await sparseEvaluate(sessions, sp.val, o.valX, o.valY, weights)
          : await sessions.evaluate(weights, o.valX, o.valY)
        record.valLoss = v.loss
        record.valAccuracy = v.accuracy
        if (isBetter(monitor, v, best)) {
          best = { loss: v.loss, accuracy: v.accuracy }
          bestWeights = cloneMlp(weights)
          bestEpoch = epoch
          sinceBest = 0
        } else sinceBest++
      } else {
        bestWeights = weights
        bestEpoch = epoch
      }
      record.ms = performance.now() - t0
      history.push(record)
      o.onEpoch?.(record)
      if (o.patience !== undefined && sinceBest >= o.patience && epoch < o.epochs) {
        stoppedEarly = true
        break
      }
    }
  } finally {
    if (!o.sessions) await sessions.release()
  }
  return {
    weights: bestWeights === weights ? cloneMlp(weights) : bestWeights,
    history,
    bestEpoch,
    steps,
    stoppedEarly,
    elapsedMs: performance.now() - started,
  }
}
