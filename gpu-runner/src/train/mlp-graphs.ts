/**
 * ONNX graphs for an MLP, built with the project's GraphBuilder:
 * - the training graph: forward, softmax cross-entropy and the backward pass, with every weight a graph INPUT
 *   so that one onnxruntime session serves every optimiser step (the matrix work runs in ORT, not in JS);
 * - the forward graph with weights as inputs (evaluation during training);
 * - the forward graph with weights as initializers (the exported, servable model).
 * All three share `addForward`, so node and tensor names are the same everywhere and every exported model of a
 * given size has an identical graph (same node names, initializer names and shapes): only the numbers differ.
 * @module
 */
import { GraphBuilder } from '../onnx/graph-builder.ts'
import { checkSizes, layerParamNames } from './mlp.ts'

/** Tensor names inside the graphs. Hidden activations are `hidden1..hidden{L-1}` (after ReLU). */
export const MLP_GRAPH_NAMES = {
  trainInput: 'x',
  trainTargets: 'targets',
  loss: 'loss',
  logits: 'logits',
  hidden: (i: number): string => `hidden${i}`,
  grad: (param: string): string => `grad.${param}`,
} as const

/**
 * Adds y = layer_L(...relu(layer_1(x))) to `g`. Layer i is MatMul(h, W) then Add(b): the plain form graph
 * rewriters (the twin builder) recognise, rather than Gemm. Returns the activations feeding each layer
 * (acts[0] = input) so the backward pass can reuse them.
 */
function addForward(
  g: GraphBuilder,
  sizes: readonly number[],
  input: string,
  output: string,
): string[] {
  const acts = [input]
  const nLayers = sizes.length - 1
  for (let i = 0; i < nLayers; i++) {
    const p = layerParamNames(i)
    const prefix = `fc${i + 1}`
    const last = i === nLayers - 1
    const xw = g.node('MatMul', [acts[i] as string, p.weight], {
      name: `${prefix}/MatMul`,
      outputs: [`${prefix}.xw`],
    })
    const pre = g.node('Add', [xw, p.bias], {
      name: `${prefix}/Add`,
      outputs: [last ? output : `${prefix}.out`],
    })
    if (!last)
      acts.push(
        g.node('Relu', [pre], {
          name: `${prefix}/Relu`,
          outputs: [MLP_GRAPH_NAMES.hidden(i + 1)],
        }),
      )
  }
  return acts
}

function addWeightInputs(g: GraphBuilder, sizes: readonly number[]): void {
  for (let i = 0; i + 1 < sizes.length; i++) {
    const p = layerParamNames(i)
    g.input(p.weight, 'float', [sizes[i] as number, sizes[i + 1] as number])
    g.input(p.bias, 'float', [sizes[i + 1] as number])
  }
}

/**
 * Adds the mean softmax cross-entropy of `logits` against `targets` (output `loss` [1]) and returns its gradient
 * with respect to the logits, [batch, classes]. `batchOf` is a tensor whose first dimension is the batch.
 */
function addLossHead(g: GraphBuilder, batchOf: string): string {
  const N = MLP_GRAPH_NAMES
  // Softmax cross-entropy through LogSoftmax: stable for large logits, and softmax = exp(logSoftmax).
  const logp = g.node('LogSoftmax', [N.logits], { name: 'loss/LogSoftmax', attrs: { axis: 1 } }) // [batch, C]
  const batchI64 = g.node('Shape', [batchOf], {
    name: 'loss/Shape',
    attrs: { start: 0, end: 1 },
  }) // [1]
  const batchF = g.node('Cast', [batchI64], { name: 'loss/Cast', attrs: { to: 1 } }) // [1] float
  const tlogp = g.node('Mul', [N.trainTargets, logp], { name: 'loss/Mul' }) // [batch, C]
  const total = g.node('ReduceSum', [tlogp], { name: 'loss/ReduceSum', attrs: { keepdims: 0 } }) // []
  const neg = g.node('Neg', [total], { name: 'loss/Neg' })
  g.node('Div', [neg, batchF], { name: 'loss/Div', outputs: [N.loss] }) // [1]

  // d(mean CE)/d(logits) = (softmax - targets) / batch, valid because each target row sums to 1.
  const prob = g.node('Exp', [logp], { name: 'grad/Exp' })
  const diff = g.node('Sub', [prob, N.trainTargets], { name: 'grad/Sub' })
  return g.node('Div', [diff, batchF], { name: 'grad/Div' })
}

/**
 * The training graph's loss head alone, for a trainer that computes the linear layer itself (sparse-linear.ts).
 * Inputs: `logits` [batch, classes], `targets` [batch, classes]. Outputs: `loss` [1], `grad.logits` (the
 * gradient of the loss with respect to the logits) and `grad.fc1.bias` [classes]: the same nodes as
 * buildTrainingGraph's, so the same kernels give the same bits.
 */
export function buildLossHeadGraph(classes: number): Uint8Array {
  const N = MLP_GRAPH_NAMES
  const g = new GraphBuilder('mlp_loss_head')
    .input(N.logits, 'float', ['batch', classes])
    .input(N.trainTargets, 'float', ['batch', classes])
  const dz = addLossHead(g, N.logits)
  g.node('Identity', [dz], { name: 'grad/logits', outputs: [N.grad(N.logits)] })
  const p = layerParamNames(0)
  const axes = 'grad/fc1/axes'
  g.int64(axes, [0])
  g.node('ReduceSum', [dz, axes], {
    name: 'grad/fc1/db',
    attrs: { keepdims: 0 },
    outputs: [N.grad(p.bias)],
  }) // [classes]
  g.output(N.loss, 'float', [1])
    .output(N.grad(N.logits), 'float', ['batch', classes])
    .output(N.grad(p.bias), 'float', [classes])
  return g.build({ producer: 'twinserve-trainer' })
}

/**
 * Training graph. Inputs: `x` [batch, in], `targets` [batch, classes] (rows are probability distributions,
 * one-hot for hard labels), then every `fcN.weight` [in, out] / `fcN.bias` [out]. Outputs: `loss` [1] (mean
 * cross-entropy over the batch), `logits` [batch, classes], and `grad.<param>` for each parameter.
 */
export function buildTrainingGraph(sizes: readonly number[]): Uint8Array {
  checkSizes(sizes)
  const N = MLP_GRAPH_NAMES
  const nLayers = sizes.length - 1
  const classes = sizes[nLayers] as number
  const g = new GraphBuilder('mlp_train')
    .input(N.trainInput, 'float', ['batch', sizes[0] as number])
    .input(N.trainTargets, 'float', ['batch', classes])
  addWeightInputs(g, sizes)
  const acts = addForward(g, sizes, N.trainInput, N.logits)

  let dz = addLossHead(g, N.trainInput) // [batch, out_i]
  for (let i = nLayers - 1; i >= 0; i--) {
    const p = layerParamNames(i)
    const h = acts[i] as string // [batch, in_i]
    g.node('Gemm', [h, dz], {
      name: `grad/fc${i + 1}/dW`,
      attrs: { transA: 1 },
      outputs: [N.grad(p.weight)],
    }) // hᵀ·dz: [in_i, out_i]
    const axes = `grad/fc${i + 1}/axes`
    g.int64(axes, [0])
    g.node('ReduceSum', [dz, axes], {
      name: `grad/fc${i + 1}/db`,
      attrs: { keepdims: 0 },
      outputs: [N.grad(p.bias)],
    }) // [out_i]
    if (i > 0) {
      const dh = g.node('Gemm', [dz, p.weight], {
        name: `grad/fc${i + 1}/dX`,
        attrs: { transB: 1 },
      }) // dz·Wᵀ: [batch, in_i]
      // h = relu(z) >= 0, so sign(h) is ReLU's derivative (0 at the kink, like every framework's ReLU grad).
      const mask = g.node('Sign', [h], { name: `grad/fc${i}/ReluMask` })
      dz = g.node('Mul', [dh, mask], { name: `grad/fc${i}/ReluGrad` })
    }
  }

  g.output(N.loss, 'float', [1]).output(N.logits, 'float', ['batch', classes])
  for (let i = 0; i < nLayers; i++) {
    const p = layerParamNames(i)
    g.output(N.grad(p.weight), 'float', [sizes[i] as number, sizes[i + 1] as number])
    g.output(N.grad(p.bias), 'float', [sizes[i + 1] as number])
  }
  return g.build({ producer: 'twinserve-trainer' })
}

/** Forward graph with weights as inputs: `x` [batch, in] + parameters → `logits` [batch, classes]. */
export function buildForwardGraph(sizes: readonly number[]): Uint8Array {
  checkSizes(sizes)
  const N = MLP_GRAPH_NAMES
  const g = new GraphBuilder('mlp_forward').input(N.trainInput, 'float', [
    'batch',
    sizes[0] as number,
  ])
  addWeightInputs(g, sizes)
  addForward(g, sizes, N.trainInput, N.logits)
  g.output(N.logits, 'float', ['batch', sizes[sizes.length - 1] as number])
  return g.build({ producer: 'twinserve-trainer' })
}

/** The servable forward graph: weights as initializers under the same names. */
export function buildInferenceGraph(
  sizes: readonly number[],
  params: ReadonlyArray<{ name: string; data: Float32Array; dims: readonly number[] }>,
  opts: { inputName: string; outputName: string; graphName: string },
): GraphBuilder {
  const g = new GraphBuilder(opts.graphName).input(opts.inputName, 'float', [
    'batch',
    sizes[0] as number,
  ])
  for (const p of params) g.float(p.name, p.data, p.dims)
  addForward(g, sizes, opts.inputName, opts.outputName)
  g.output(opts.outputName, 'float', ['batch', sizes[sizes.length - 1] as number])
  return g
}
