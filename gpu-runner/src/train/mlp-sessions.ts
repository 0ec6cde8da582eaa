/**
 * onnxruntime sessions for one MLP shape: the training graph (loss + gradients) and the forward graph, both
 * taking the weights as inputs so that the same two sessions serve every step, every epoch and every model of
 * that shape (base and all experts).
 * @module
 */
import { AppError } from '@twinserve/shared'
import { openSession, ort, type Provider, type ProviderChoice } from '../runtime/ort-session.ts'
import { checkWeights, layerParamNames, type MlpLayer, type MlpWeights } from './mlp.ts'
import {
  buildForwardGraph,
  buildLossHeadGraph,
  buildTrainingGraph,
  MLP_GRAPH_NAMES,
} from './mlp-graphs.ts'

export interface MlpSessionOptions {
  /** Defaults to 'cpu': the zoo's determinism claim is for CPU; pass 'auto' to try CUDA. */
  provider?: ProviderChoice
  /** Intra-op threads; results are bit-for-bit reproducible for a fixed thread count on one machine. */
  threads?: number
}

export interface LossAndGradients {
  /** Mean cross-entropy over the batch. */
  loss: number
  /** [batch, classes] */
  logits: Float32Array
  /** Same layout as the weights: grads[i].weight [in, out], grads[i].bias [out]. */
  grads: MlpLayer[]
}

/** The training graph's outputs past the logits, from logits computed outside it (sparse-linear.ts). */
export interface LossHead {
  /** Mean cross-entropy over the batch. */
  loss: number
  /** [batch, classes]: the loss's gradient with respect to the logits. */
  dLogits: Float32Array
  /** [classes]: the last layer's bias gradient. */
  biasGrad: Float32Array
}

export interface Evaluation {
  /** Mean cross-entropy (natural log). */
  loss: number
  accuracy: number
  n: number
}

function weightFeeds(w: MlpWeights): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {}
  w.layers.forEach((l, i) => {
    const p = layerParamNames(i)
    feeds[p.weight] = new ort.Tensor('float32', l.weight, [
      w.sizes[i] as number,
      w.sizes[i + 1] as number,
    ])
    feeds[p.bias] = new ort.Tensor('float32', l.bias, [w.sizes[i + 1] as number])
  })
  return feeds
}

function outputOf(out: ort.InferenceSession.ReturnType, name: string): Float32Array {
  const t = out[name]
  if (!t || !(t.data instanceof Float32Array))
    throw new AppError('INTERNAL', `ORT returned no float tensor '${name}'`)
  return t.data
}

/** Index of the largest value in each row of a [n, c] matrix (first one on ties). */
export function argmaxRows(m: Float32Array, c: number): Int32Array {
  const n = m.length / c
  const out = new Int32Array(n)
  for (let r = 0; r < n; r++) {
    let best = 0
    let bestV = m[r * c] as number
    for (let j = 1; j < c; j++) {
      const v = m[r * c + j] as number
      if (v > bestV) {
        bestV = v
        best = j
      }
    }
    out[r] = best
  }
  return out
}

/** Rows per forward run in MlpSessions.logits (and evaluate). */
export const LOGITS_CHUNK = 2048

export class MlpSessions {
  private head: Promise<ort.InferenceSession> | undefined

  private constructor(
    readonly sizes: readonly number[],
    readonly provider: Provider,
    private readonly train: ort.InferenceSession,
    private readonly forward: ort.InferenceSession,
    private readonly options: MlpSessionOptions,
  ) {}

  /**
   * @example
   * const s = await MlpSessions.open([784, 256, 128, 10])
   * const { loss, grads } = await s.lossAndGradients(weights, x, targets)
   * await s.release()
   */
  static async open(sizes: readonly number[], opts: MlpSessionOptions = {}): Promise<MlpSessions> {
    const so = {
      provider: opts.provider ?? 'cpu',
      ...(opts.threads ? { threads: opts.threads } : {}),
    }
    const train = await openSession(buildTrainingGraph(sizes), so)
    const forward = await openSession(buildForwardGraph(sizes), so)
    return new MlpSessions([...sizes], train.provider, train.session, forward.session, opts)
  }

  get inputSize(): number {
    return this.sizes[0] as number
  }

  get classes(): number {
    return this.sizes[this.sizes.length - 1] as number
  }

  /** x: [batch, in]; targets: [batch, classes], each row a distribution (one-hot for hard labels). */
  async lossAndGradients(
    w: MlpWeights,
    x: Float32Array,
    targets: Float32Array,
  ): Promise<LossAndGradients> {
    const batch = x.length / this.inputSize
    if (!Number.isInteger(batch) || targets.length !== batch * this.classes)
      throw new AppError(
        'INVALID_REQUEST',
        `batch shapes do not match: x has ${x.length} values (${this.inputSize} per row), targets ${targets.length} (${this.classes} per row)`,
      )
    const N = MLP_GRAPH_NAMES
    const out = await this.train.run({
      [N.trainInput]: new ort.Tensor('float32', x, [batch, this.inputSize]),
      [N.trainTargets]: new ort.Tensor('float32', targets, [batch, this.classes]),
      ...weightFeeds(w),
    })
    const grads = w.layers.map((_, i) => {
      const p = layerParamNames(i)
      return { weight: outputOf(out, N.grad(p.weight)), bias: outputOf(out, N.grad(p.bias)) }
    })
    return { loss: outputOf(out, N.loss)[0] as number, logits: outputOf(out, N.logits), grads }
  }

  /**
   * Loss, logits gradient and bias gradient for logits [batch, classes] the caller computed: the training graph's
   * own nodes past its last layer (opened on first use).
   */
  async lossHead(logits: Float32Array, targets: Float32Array): Promise<LossHead> {
    const c = this.classes
    if (this.sizes.length !== 2)
      throw new AppError('INVALID_REQUEST', `lossHead is for a one-layer MLP, not [${this.sizes}]`)
    if (logits.length !== targets.length || logits.length % c !== 0)
      throw new AppError(
        'INVALID_REQUEST',
        `logits (${logits.length} values) and targets (${targets.length}) must both be [batch, ${c}]`,
      )
    this.head ??= openSession(buildLossHeadGraph(c), {
      provider: this.provider,
      ...(this.options.threads ? { threads: this.options.threads } : {}),
    }).then((s) => s.session)
    const N = MLP_GRAPH_NAMES
    const batch = logits.length / c
    const out = await (await this.head).run({
      [N.logits]: new ort.Tensor('float32', logits, [batch, c]),
      [N.trainTargets]: new ort.Tensor('float32', targets, [batch, c]),
    })
    return {
      loss: outputOf(out, N.loss)[0] as number,
      dLogits: outputOf(out, N.grad(N.logits)),
      biasGrad: outputOf(out, N.grad(layerParamNames(0).bias)),
    }
  }

  /** Logits [n, classes] for x [n, in], run in chunks of `batchSize` rows to bound memory. */
  async logits(w: MlpWeights, x: Float32Array, batchSize = LOGITS_CHUNK): Promise<Float32Array> {
    const d = this.inputSize
    const n = x.length / d
    if (!Number.isInteger(n))
      throw new AppError('INVALID_REQUEST', `x has ${x.length} values, not a multiple of ${d}`)
    const c = this.classes
    const result = new Float32Array(n * c)
    const feeds = weightFeeds(w)
    for (let start = 0; start < n; start += batchSize) {
      const rows = Math.min(batchSize, n - start)
      const out = await this.forward.run({
        ...feeds,
        [MLP_GRAPH_NAMES.trainInput]: new ort.Tensor(
          'float32',
          x.subarray(start * d, (start + rows) * d),
          [rows, d],
        ),
      })
      result.set(outputOf(out, MLP_GRAPH_NAMES.logits), start * c)
    }
    return result
  }

  /** Mean cross-entropy and accuracy of `w` on (x, y). */
  async evaluate(w: MlpWeights, x: Float32Array, y: Int32Array): Promise<Evaluation> {
    checkWeights(w, this.sizes)
    const logits = await this.logits(w, x)
    return scoreLogits(logits, y, this.classes)
  }

  async release(): Promise<void> {
    await this.train.release()
    await this.forward.release()
    if (this.head) await (await this.head).release()
  }
}

/** Cross-entropy (in double precision) and accuracy of logits [n, c] against labels y [n]. */
export function scoreLogits(logits: Float32Array, y: Int32Array, c: number): Evaluation {
  const n = y.length
  if (logits.length !== n * c)
    throw new AppError('INVALID_REQUEST', `${logits.length} logits for ${n} labels x ${c} classes`)
  let loss = 0
  let correct = 0
  for (let r = 0; r < n; r++) {
    let max = Number.NEGATIVE_INFINITY
    let arg = 0
    for (let j = 0; j < c; j++) {
      const v = logits[r * c + j] as number
      if (v > max) {
        max = v
        arg = j
      }
    }
    let sum = 0
    for (let j = 0; j < c; j++) sum += Math.exp((logits[r * c + j] as number) - max)
    const label = y[r] as number
    loss -= (logits[r * c + label] as number) - max - Math.log(sum)
    if (arg === label) correct++
  }
  return { loss: n ? loss / n : 0, accuracy: n ? correct / n : 0, n }
}
