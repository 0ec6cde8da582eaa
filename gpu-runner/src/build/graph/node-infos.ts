/**
 * Per op type, how a node's outputs relate to its inputs for the batch tracking (batch-axes.ts): their dims in
 * the probe run and where the batch sits in them (tensor-atoms.ts). Elementwise ops keep the layout, broadcasting
 * ops merge it, MatMul/Gemm/Gather/Transpose/Concat move axes, views (Reshape, Flatten, Squeeze, Unsqueeze) regroup
 * atoms, and ops that reduce, normalise or softmax over the batch's axis mix rows (the tensor is then *lost*).
 * Ops whose output dims come from tensor values (Reshape's shape, Slice's bounds, Expand, …) read them from the
 * probe run; ops not listed here keep no batch: with a batched input their outputs are lost, naming the op.
 * @module
 */
import type { INodeProto } from '../../onnx/proto.ts'
import { TensorDataType, toNumber } from '../../onnx/proto.ts'
import {
  type Atom,
  axisFixed,
  batchAxisOf,
  broadcastInfo,
  hasBatch,
  lostInfo,
  plainInfo,
  reshapeInfo,
  type TensorInfo,
} from './tensor-atoms.ts'

export interface NodeContext {
  node: INodeProto
  opset: number
  /** `Op node 'name'`, for reasons. */
  what: string
  /** Input i's info; undefined for an absent optional input. */
  input(i: number): TensorInfo | undefined
  /** Input i's values when it is a constant of integers (initializer or Constant node). */
  ints(i: number): number[] | undefined
  /** Output k's dims in the probe run (for ops whose dims come from values). */
  probed(k: number): number[]
  int(name: string, fallback: number): number
  intList(name: string): number[] | undefined
}

type Handler = (c: NodeContext) => TensorInfo[]

const D = TensorDataType
const UNARY = new Set(
  'Identity Relu LeakyRelu Elu Selu Celu Sigmoid HardSigmoid HardSwish Tanh Erf Exp Log Sqrt Reciprocal Neg Abs Floor Ceil Round Sign Sin Cos Tan Softplus Softsign Gelu Mish Clip Shrink ThresholdedRelu BatchNormalization InstanceNormalization LRN Not IsNaN IsInf Cast CastLike Dropout'.split(
    ' ',
  ),
)
const BOOL_OUT = new Set(
  'Not IsNaN IsInf Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor'.split(' '),
)
const BROADCAST = new Set(
  'Add Sub Mul Div Pow Mod Max Min Sum Mean PRelu BitShift And Or Xor Equal Less Greater LessOrEqual GreaterOrEqual Where'.split(
    ' ',
  ),
)
/** Ops whose output dims depend on input values: read from the probe run. */
export const PROBED_OPS = new Set(
  'Reshape Expand Slice Split Pad Tile TopK Resize Upsample ConstantOfShape Range NonZero OneHot Compress Conv ConvTranspose MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool CenterCropPad'.split(
    ' ',
  ),
)
/** Views whose axes are attributes before opset 13 and an input from 13 on. */
const AXES_INPUT_FROM_13 = new Set(['Squeeze', 'Unsqueeze'])

const norm = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis)

function need(c: NodeContext, i: number): TensorInfo {
  const t = c.input(i)
  if (!t) return lostInfo([], D.FLOAT, `${c.what} lacks input ${i}`)
  return t
}

/** The node's own element type for op types whose output type differs from input 0. */
function outElem(c: NodeContext): number {
  const op = c.node.opType ?? ''
  if (op === 'Cast') return c.int('to', D.FLOAT)
  if (op === 'CastLike') return c.input(1)?.elem ?? D.FLOAT
  if (BOOL_OUT.has(op)) return D.BOOL
  if (op === 'Where') return c.input(1)?.elem ?? D.FLOAT
  return c.input(0)?.elem ?? D.FLOAT
}

/** A reduction over `axes` (normalised), keeping them as 1 or dropping them. */
function reduceOver(c: NodeContext, t: TensorInfo, axes: number[], keep: boolean, elem: number) {
  const b = batchAxisOf(t)
  if (b && axes.includes(b.axis))
    return lostInfo(t.dims, elem, `${c.what} reduces over the batch's axis`)
  const dims: number[] = []
  const out: Atom[][] = []
  t.dims.forEach((d, i) => {
    if (!axes.includes(i)) {
      dims.push(d)
      out.push(t.axes[i] ?? [])
    } else if (keep) {
      dims.push(1)
      out.push([{ size: 1, fixed: true }])
    }
  })
  return { dims, axes: out, elem, ...(t.lost ? { lost: t.lost } : {}) }
}

/** An op that changes some axes' sizes in place (Slice, Pad, Tile, TopK, Split): the batch's axis must keep its. */
function resized(c: NodeContext, t: TensorInfo, dims: number[], elem = t.elem): TensorInfo {
  if (t.lost) return lostInfo(dims, elem, t.lost)
  if (dims.length !== t.dims.length)
    return hasBatch(t)
      ? lostInfo(dims, elem, `${c.what} changes the rank`)
      : plainInfo(dims, elem, false)
  const b = batchAxisOf(t)
  if (b && dims[b.axis] !== t.dims[b.axis])
    return lostInfo(dims, elem, `${c.what} changes the batch's axis`)
  const axes = dims.map((d, i) =>
    d === t.dims[i] ? (t.axes[i] ?? []) : [{ size: d, fixed: d === 1 }],
  )
  return { dims, axes, elem }
}

/** Axes of Squeeze/Unsqueeze/Reduce*: the attribute, or the constant input 1 from the opset that moved them. */
function axesOf(c: NodeContext, inputFrom: number): number[] | undefined {
  return c.opset >= inputFrom ? c.ints(1) : c.intList('axes')
}

function viewDims(c: NodeContext, t: TensorInfo): number[] {
  const op = c.node.opType
  const rank = t.dims.length
  if (op === 'Flatten') {
    const a = norm(c.int('axis', 1), rank)
    return [
      t.dims.slice(0, a).reduce((x, y) => x * y, 1),
      t.dims.slice(a).reduce((x, y) => x * y, 1),
    ]
  }
  const axes = AXES_INPUT_FROM_13.has(op ?? '') ? axesOf(c, 13) : undefined
  if (op === 'Squeeze') {
    if (axes === undefined && c.node.input?.[1]) return c.probed(0)
    const drop = (axes ?? t.dims.flatMap((d, i) => (d === 1 ? [i] : []))).map((a) => norm(a, rank))
    return t.dims.filter((_, i) => !drop.includes(i))
  }
  if (op === 'Unsqueeze' && axes !== undefined) {
    const outRank = rank + axes.length
    const at = new Set(axes.map((a) => norm(a, outRank)))
    const dims: number[] = []
    let k = 0
    for (let i = 0; i < outRank; i++) dims.push(at.has(i) ? 1 : (t.dims[k++] ?? 0))
    return dims
  }
  return c.probed(0)
}

function matMul(c: NodeContext): TensorInfo[] {
  const a = need(c, 0)
  const b = need(c, 1)
  const ra = a.dims.length
  const rb = b.dims.length
  const lostIf = (cond: boolean) =>
    cond && lostInfo([], a.elem, `${c.what} contracts over the batch`)
  const ba = batchAxisOf(a)
  const bb = batchAxisOf(b)
  const bad = lostIf(ba?.axis === ra - 1 || (rb >= 2 && bb?.axis === rb - 2) || (rb === 1 && !!bb))
  if (bad) return [bad]
  // Leading (stacked) axes broadcast; the last two are [rows of a, columns of b].
  const lead = (t: TensorInfo, r: number) => ({
    ...t,
    dims: t.dims.slice(0, r),
    axes: t.axes.slice(0, r),
  })
  const stacked = broadcastInfo(
    [lead(a, Math.max(0, ra - 2)), lead(b, Math.max(0, rb - 2))],
    a.elem,
    c.what,
  )
  const dims = [...stacked.dims]
  const axes = [...stacked.axes]
  if (ra >= 2) {
    dims.push(a.dims[ra - 2] ?? 0)
    axes.push(a.axes[ra - 2] ?? [])
  }
  if (rb >= 2) {
    dims.push(b.dims[rb - 1] ?? 0)
    axes.push(b.axes[rb - 1] ?? [])
  }
  const lost = a.lost ?? b.lost ?? stacked.lost
  return [{ dims, axes, elem: a.elem, ...(lost ? { lost } : {}) }]
}

function gemm(c: NodeContext): TensorInfo[] {
  const a = need(c, 0)
  const b = need(c, 1)
  const ta = c.int('transA', 0) === 1
  const tb = c.int('transB', 0) === 1
  const [m, k] = ta ? [1, 0] : [0, 1]
  const n = tb ? 0 : 1
  if (batchAxisOf(a)?.axis === k || batchAxisOf(b)?.axis === 1 - n)
    return [lostInfo([], a.elem, `${c.what} contracts over the batch`)]
  const dims = [a.dims[m] ?? 0, b.dims[n] ?? 0]
  const lost = a.lost ?? b.lost
  return [
    {
      dims,
      axes: [a.axes[m] ?? [], b.axes[n] ?? []],
      elem: a.elem,
      ...(lost ? { lost } : {}),
    },
  ]
}

function transpose(c: NodeContext): TensorInfo[] {
  const t = need(c, 0)
  const rank = t.dims.length
  const perm = c.intList('perm') ?? Array.from({ length: rank }, (_, i) => rank - 1 - i)
  return [
    {
      dims: perm.map((p) => t.dims[p] ?? 0),
      axes: perm.map((p) => t.axes[p] ?? []),
      elem: t.elem,
      ...(t.lost ? { lost: t.lost } : {}),
    },
  ]
}

function gather(c: NodeContext): TensorInfo[] {
  const data = need(c, 0)
  const idx = need(c, 1)
  const axis = norm(c.int('axis', 0), data.dims.length)
  const dims = [...data.dims.slice(0, axis), ...idx.dims, ...data.dims.slice(axis + 1)]
  const lost = data.lost ?? idx.lost
  if (lost) return [lostInfo(dims, data.elem, lost)]
  const db = batchAxisOf(data)
  if (db?.axis === axis || (db && hasBatch(idx)))
    return [lostInfo(dims, data.elem, `${c.what} picks rows along the batch`)]
  const axes = [...data.axes.slice(0, axis), ...idx.axes, ...data.axes.slice(axis + 1)]
  return [{ dims, axes, elem: data.elem }]
}

function concat(c: NodeContext): TensorInfo[] {
  const ins = (c.node.input ?? []).map((_, i) => need(c, i))
  const first = ins[0] ?? lostInfo([], D.FLOAT, `${c.what} has no inputs`)
  const axis = norm(c.int('axis', 0), first.dims.length)
  const dims = [...first.dims]
  dims[axis] = ins.reduce((s, t) => s + (t.dims[axis] ?? 0), 0)
  const lost = ins.find((t) => t.lost)?.lost
  if (lost) return [lostInfo(dims, first.elem, lost)]
  const batched = ins.filter(hasBatch)
  const ref = batched[0] ?? first
  const layout = (t: TensorInfo) => JSON.stringify(t.axes.filter((_, i) => i !== axis))
  if (batchAxisOf(ref)?.axis === axis || batched.some((t) => layout(t) !== layout(ref)))
    return [lostInfo(dims, first.elem, `${c.what} joins along the batch or mixes batch layouts`)]
  const axes = ref.axes.map((a, i) =>
    i === axis
      ? [{ size: dims[axis] as number, fixed: ins.every((t) => axisFixed(t.axes[axis] ?? [])) }]
      : a,
  )
  return [{ dims, axes, elem: first.elem }]
}

/** Softmax and LayerNormalization: rows mix when the batch is inside the normalised axes. */
function normalising(c: NodeContext): TensorInfo[] {
  const t = need(c, 0)
  const op = c.node.opType
  const rank = t.dims.length
  const legacy = op !== 'LayerNormalization' && c.opset < 13 // coerced to 2-D at `axis`
  const a = norm(c.int('axis', op === 'LayerNormalization' || !legacy ? -1 : 1), rank)
  const b = batchAxisOf(t)
  const out = (legacy || op === 'LayerNormalization' ? (b?.axis ?? -1) >= a : b?.axis === a)
    ? lostInfo(t.dims, t.elem, `${c.what} normalises over the batch's axis`)
    : t
  if (op !== 'LayerNormalization') return [out]
  const stat = reduceOver(
    c,
    t,
    Array.from({ length: rank - a }, (_, i) => a + i),
    true,
    t.elem,
  )
  return [out, stat, stat]
}

function reduce(c: NodeContext): TensorInfo[] {
  const t = need(c, 0)
  const op = c.node.opType ?? ''
  const rank = t.dims.length
  const keep = c.int('keepdims', 1) === 1
  if (op === 'ArgMax' || op === 'ArgMin')
    return [reduceOver(c, t, [norm(c.int('axis', 0), rank)], keep, D.INT64)]
  const given = axesOf(c, op === 'ReduceSum' ? 13 : 18)
  const all = Array.from({ length: rank }, (_, i) => i)
  const axes =
    given === undefined || given.length === 0
      ? c.int('noop_with_empty_axes', 0) === 1 && given !== undefined
        ? []
        : all
      : given.map((x) => norm(x, rank))
  return [reduceOver(c, t, axes, keep, t.elem)]
}

function shape(c: NodeContext): TensorInfo[] {
  const rank = need(c, 0).dims.length
  if (c.node.opType === 'Size') return [plainInfo([], D.INT64, true)]
  const start = norm(c.int('start', 0), rank)
  const end = c.intList('end') ? norm(c.int('end', rank), rank) : rank
  return [plainInfo([Math.max(0, Math.min(end, rank) - start)], D.INT64, true)]
}

function constant(c: NodeContext): TensorInfo[] {
  const a = c.node.attribute?.[0]
  if (a?.t)
    return [
      plainInfo(
        (a.t.dims ?? []).map((d) => toNumber(d)),
        a.t.dataType ?? D.FLOAT,
        true,
      ),
    ]
  if (a?.floats?.length) return [plainInfo([a.floats.length], D.FLOAT, true)]
  if (a?.ints?.length) return [plainInfo([a.ints.length], D.INT64, true)]
  return [plainInfo([], a?.name === 'value_float' ? D.FLOAT : D.INT64, true)]
}

/** Values made from a shape (no rows of their own): ConstantOfShape, Range, EyeLike. */
function fromShape(c: NodeContext): TensorInfo[] {
  const op = c.node.opType
  if (op === 'EyeLike') return [plainInfo(need(c, 0).dims, c.int('dtype', need(c, 0).elem), false)]
  const elem = op === 'Range' ? need(c, 0).elem : (c.node.attribute?.[0]?.t?.dataType ?? D.FLOAT)
  return [plainInfo(c.probed(0), elem, false)]
}

/** Ops that keep the batch on axis 0 alone (convolutions, pooling): N is their first axis. */
function perSample(c: NodeContext): TensorInfo[] {
  const t = need(c, 0)
  const dims = c.probed(0)
  const b = batchAxisOf(t)
  if (t.lost || (b && (b.axis !== 0 || b.outer.size !== 1 || b.inner.size !== 1)))
    return [lostInfo(dims, t.elem, t.lost ?? `${c.what} needs the batch alone on axis 0`)]
  const out = plainInfo(dims, t.elem, false)
  if (b) out.axes[0] = t.axes[0] ?? []
  return [out]
}

function expand(c: NodeContext): TensorInfo[] {
  const t = need(c, 0)
  const dims = c.probed(0)
  if (t.lost) return [lostInfo(dims, t.elem, t.lost)]
  const lead = dims.length - t.dims.length
  const axes = dims.map((d, i) => {
    const k = i - lead
    return k >= 0 && t.dims[k] === d ? (t.axes[k] ?? []) : [{ size: d, fixed: d === 1 }]
  })
  return [{ dims, axes, elem: t.elem }]
}

function positional(c: NodeContext, k: number, axis: number): TensorInfo {
  const t = need(c, 0)
  const b = batchAxisOf(t)
  if (
    b &&
    (b.axis === norm(axis, t.dims.length) ||
      (c.node.opType === 'Trilu' && b.axis >= t.dims.length - 2))
  )
    return lostInfo(t.dims, t.elem, `${c.what} runs along the batch's axis`)
  return k === 0 ? t : { ...t, elem: D.INT64 }
}

const HANDLERS: Record<string, Handler> = {
  MatMul: matMul,
  Gemm: gemm,
  Transpose: transpose,
  Gather: gather,
  Concat: concat,
  Softmax: normalising,
  LogSoftmax: normalising,
  Hardmax: normalising,
  LayerNormalization: normalising,
  ReduceSum: reduce,
  ReduceMean: reduce,
  ReduceMax: reduce,
  ReduceMin: reduce,
  ReduceProd: reduce,
  ReduceL1: reduce,
  ReduceL2: reduce,
  ReduceLogSumExp: reduce,
  ReduceSumSquare: reduce,
  ArgMax: reduce,
  ArgMin: reduce,
  Shape: shape,
  Size: shape,
  Constant: constant,
  ConstantOfShape: fromShape,
  Range: fromShape,
  EyeLike: fromShape,
  Expand: expand,
  Trilu: (c) => [positional(c, 0, -1)],
  CumSum: (c) => [positional(c, 0, c.ints(1)?.[0] ?? 0)],
  TopK: (c) =>
    [0, 1].map((k) =>
      resized(c, positional(c, k, c.int('axis', -1)), c.probed(k), k ? D.INT64 : need(c, 0).elem),
    ),
  NonZero: (c) => [
    hasBatch(need(c, 0))
      ? lostInfo(c.probed(0), D.INT64, `${c.what} lists positions across rows`)
      : plainInfo(c.probed(0), D.INT64, false),
  ],
  Conv: perSample,
  ConvTranspose: perSample,
  MaxPool: perSample,
  AveragePool: perSample,
  LpPool: perSample,
  GlobalAveragePool: perSample,
  GlobalMaxPool: perSample,
}

const VIEWS = new Set(['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze'])
const RESIZED = new Set(['Slice', 'Pad', 'Tile', 'Resize', 'Upsample', 'Split', 'CenterCropPad'])

/** The infos of a node's outputs. */
export function nodeInfos(c: NodeContext): TensorInfo[] {
  const op = c.node.opType ?? ''
  const domain = c.node.domain ?? ''
  const outputs = c.node.output ?? []
  if (domain === '' || domain === 'ai.onnx') {
    const h = HANDLERS[op]
    if (h) return h(c)
    if (UNARY.has(op)) {
      const t = need(c, 0)
      const elem = outElem(c)
      return outputs.map((_, k) => (k === 0 ? { ...t, elem } : { ...t, elem: D.BOOL }))
    }
    if (BROADCAST.has(op))
      return [
        broadcastInfo(
          (c.node.input ?? []).map((_, i) => need(c, i)),
          outElem(c),
          c.what,
        ),
      ]
    if (VIEWS.has(op)) {
      const t = need(c, 0)
      return [reshapeInfo(t, viewDims(c, t), c.what)]
    }
    if (RESIZED.has(op)) return outputs.map((_, k) => resized(c, need(c, 0), c.probed(k)))
  }
  const ins = (c.node.input ?? []).flatMap((_, i) => c.input(i) ?? [])
  const batched = ins.some((t) => hasBatch(t) || t.lost)
  return outputs.map((_, k) => {
    const dims = c.probed(k)
    const elem = ins[0]?.elem ?? D.FLOAT
    return batched
      ? lostInfo(dims, elem, `${c.what} is not an op the batch tracking follows`)
      : plainInfo(dims, elem, false)
  })
}

/** Which outputs of a node need their dims from the probe run. */
export function probedOutputs(
  node: INodeProto,
  opset: number,
  isConst: (name: string) => boolean,
): number[] {
  const op = node.opType ?? ''
  const outputs = node.output ?? []
  const all = outputs.map((_, k) => k)
  const known = (node.domain ?? '') === '' || node.domain === 'ai.onnx'
  if (!known) return all
  if (PROBED_OPS.has(op) || RESIZED.has(op)) return all
  if (op === 'Reshape') return all
  if (AXES_INPUT_FROM_13.has(op) && opset >= 13 && node.input?.[1] && !isConst(node.input[1]))
    return all
  if (HANDLERS[op] || UNARY.has(op) || BROADCAST.has(op) || VIEWS.has(op)) return []
  return all
}
