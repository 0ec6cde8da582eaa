/**
 * Node emitters whose form changed across ONNX opsets 9 to 21, so that every op the rewrite adds is valid in the
 * base model's own opset. The rewrite keeps that opset instead of raising it, because raising it would change
 * the meaning of nodes already in the graph (Softmax's axis, Unsqueeze/ReduceSum/Split/Slice axes, Clip's
 * bounds, TopK's k, …) and each would need an exact conversion.
 *
 * What depends on the opset:
 * - Unsqueeze and ReduceSum take their axes as an input from 13, ReduceMean/ReduceMax/ReduceMin/ReduceProd from
 *   18; before that as an attribute. Slice takes starts/ends/axes as inputs from 10.
 * - TopK takes k as an attribute at 9, as an input from 10, and has `largest`/`sorted` from 11.
 * - GatherElements and ScatterElements exist from 11 (before: a Gather on the flattened data, and `Scatter`).
 * - GreaterOrEqual exists from 12; Max/Min take integers from 12.
 * - Softmax takes a negative axis from 11.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { onnx, toNumber } from '../../onnx/proto.ts'
import type { GraphEditor } from './graph-editor.ts'

/** Lowest default-domain opset the builder reads (the rewrite emits each op in the form that opset has). */
export const MIN_OPSET = 9

export function defaultOpset(model: IModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')
  return entry?.version == null ? 1 : toNumber(entry.version)
}

export function checkOpset(model: IModelProto, label: string): number {
  const v = defaultOpset(model)
  if (v < MIN_OPSET)
    throw new AppError(
      'INVALID_MODEL',
      `${label} uses ONNX opset ${v}; the builder reads opsets ${MIN_OPSET} and newer (re-export the models with opset ${MIN_OPSET} or newer)`,
    )
  return v
}

/** What the build report says about the opset: the model's, and the forms the rewrite emitted for it. */
export function opsetForms(opset: number): string[] {
  const forms: string[] = []
  if (opset < 13) forms.push('Unsqueeze/ReduceSum axes as attributes')
  if (opset < 18) forms.push('ReduceMean/ReduceMax/ReduceMin/ReduceProd axes as attributes')
  if (opset < 10) forms.push('TopK k and Slice bounds as attributes')
  else if (opset < 11) forms.push('TopK without largest/sorted')
  if (opset < 11) forms.push('GatherElements as a flat Gather, ScatterElements as Scatter')
  if (opset < 12) forms.push('GreaterOrEqual as Not(Less), integer Max/Min through float')
  return forms
}

const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64

type ReduceOp = 'ReduceSum' | 'ReduceMean' | 'ReduceMax' | 'ReduceMin' | 'ReduceProd'

export class Ops {
  constructor(
    private readonly editor: GraphEditor,
    readonly opset: number,
  ) {}

  /** @param axesName hint of the axes initializer (opset 13 on) */
  unsqueeze(x: string, axes: readonly number[], hint = 'unsqueeze', axesName?: string): string {
    if (axes.length === 0) return x
    if (this.opset < 13)
      return this.editor.node('Unsqueeze', [x], { attrs: { axes: [...axes] }, hint })
    const a = this.editor.int64(axesName ?? `${hint}_axes`, [...axes])
    return this.editor.node('Unsqueeze', [x, a], { hint })
  }

  private reduce(
    op: ReduceOp,
    x: string,
    axes: readonly number[],
    keepdims: boolean,
    hint: string,
  ): string {
    const inputAxes = op === 'ReduceSum' ? this.opset >= 13 : this.opset >= 18
    const keep = keepdims ? 1 : 0
    if (inputAxes) {
      const a = this.editor.int64(`${hint}_axes`, [...axes])
      return this.editor.node(op, [x, a], { attrs: { keepdims: keep }, hint })
    }
    return this.editor.node(op, [x], { attrs: { axes: [...axes], keepdims: keep }, hint })
  }

  reduceSum(x: string, axes: readonly number[], keepdims: boolean, hint = 'reduce_sum'): string {
    return this.reduce('ReduceSum', x, axes, keepdims, hint)
  }

  reduceMean(x: string, axes: readonly number[], keepdims: boolean, hint = 'reduce_mean'): string {
    return this.reduce('ReduceMean', x, axes, keepdims, hint)
  }

  reduceMax(x: string, axes: readonly number[], keepdims: boolean, hint = 'reduce_max'): string {
    return this.reduce('ReduceMax', x, axes, keepdims, hint)
  }

  reduceProd(x: string, axes: readonly number[], keepdims: boolean, hint = 'reduce_prod'): string {
    return this.reduce('ReduceProd', x, axes, keepdims, hint)
  }

  /** x[start:end] along `axis` of a 1-D or N-D tensor (constant bounds). */
  slice(x: string, axis: number, start: number, end: number, hint = 'slice'): string {
    if (this.opset < 10)
      return this.editor.node('Slice', [x], {
        attrs: { axes: [axis], starts: [start], ends: [end] },
        hint,
      })
    const { editor } = this
    return editor.node(
      'Slice',
      [
        x,
        editor.int64(`${hint}_starts`, [start]),
        editor.int64(`${hint}_ends`, [end]),
        editor.int64(`${hint}_axes`, [axis]),
      ],
      { hint },
    )
  }

  /**
   * The k largest values of `x` along its last axis, sorted descending, and their indices.
   * @param names hints for the k initializer and the two outputs
   * @param attrs whether to write `largest`/`sorted` where the opset has them (they are the defaults)
   */
  topK(
    x: string,
    k: number,
    hint: string,
    names: { k?: string; values?: string; indices?: string } = {},
    attrs = true,
  ): { values: string; indices: string } {
    const { editor } = this
    const kt = this.opset >= 10 ? editor.int64(names.k ?? `${hint}_k`, [k]) : undefined
    const outputs = [
      editor.fresh(names.values ?? `${hint}_values`),
      editor.fresh(names.indices ?? `${hint}_indices`),
    ]
    if (kt === undefined) editor.node('TopK', [x], { outputs, attrs: { axis: -1, k }, hint })
    else {
      const extra: Record<string, number> =
        this.opset >= 11 && attrs ? { largest: 1, sorted: 1 } : {}
      editor.node('TopK', [x, kt], { outputs, attrs: { axis: -1, ...extra }, hint })
    }
    return { values: outputs[0] as string, indices: outputs[1] as string }
  }

  /** out[b, j] = data[b, idx[b, j]] for 2-D data [batch, N] and int64 idx [batch, K] (GatherElements, axis 1). */
  gatherElements(data: string, idx: string, hint: string): string {
    const { editor } = this
    if (this.opset >= 11)
      return editor.node('GatherElements', [data, idx], { attrs: { axis: 1 }, hint })
    const { flat, offsets } = this.rowOffsets(data, hint)
    const at = editor.node('Add', [idx, offsets], { hint: `${hint}/flat_idx` })
    return editor.node('Gather', [flat, at], { attrs: { axis: 0 }, hint })
  }

  /** `data` with data[b, idx[b, j]] = updates[b, j] (ScatterElements, axis 1). */
  scatterElements(data: string, idx: string, updates: string, hint: string): string {
    const op = this.opset >= 11 ? 'ScatterElements' : 'Scatter'
    return this.editor.node(op, [data, idx, updates], { attrs: { axis: 1 }, hint })
  }

  /**
   * Opsets 9–10: [batch·N] flat data, and b·N per row as an int64 [batch, 1] column (no Range before 11: the row
   * numbers are the NonZero positions of a ones vector, as exporters build `arange` at opset 9).
   */
  private rowOffsets(data: string, hint: string): { flat: string; offsets: string } {
    const { editor } = this
    const shape = editor.node('Shape', [data], { hint: `${hint}/shape` })
    const rows = this.slice(shape, 0, 0, 1, `${hint}/rows`)
    const width = this.slice(shape, 0, 1, 2, `${hint}/width`)
    const one = { tensor: { dims: [1], dataType: INT64, int64Data: [1] } }
    const ones = editor.node('ConstantOfShape', [rows], {
      attrs: { value: one },
      hint: `${hint}/ones`,
    })
    const positions = editor.node('NonZero', [ones], { hint: `${hint}/positions` }) // [1, batch]
    const column = editor.node('Transpose', [positions], {
      attrs: { perm: [1, 0] },
      hint: `${hint}/row`,
    }) // [batch, 1]
    const offsets = editor.node('Mul', [column, width], { hint: `${hint}/offsets` })
    const flat = editor.node('Reshape', [data, editor.int64(`${hint}/minus1`, [-1])], {
      hint: `${hint}/flat`,
    })
    return { flat, offsets }
  }

  greaterOrEqual(a: string, b: string, hint: string): string {
    const { editor } = this
    if (this.opset >= 12) return editor.node('GreaterOrEqual', [a, b], { hint })
    return editor.node('Not', [editor.node('Less', [a, b], { hint: `${hint}/less` })], { hint })
  }

  /** min(max(x, lo), hi) of int64 tensors (integer Max/Min exist from 12; before, computed in float). */
  clampInt64(x: string, lo: string, hi: string, hint: string): string {
    const { editor } = this
    if (this.opset >= 12) {
      const atLeast = editor.node('Max', [x, lo], { hint: `${hint}_lo` })
      return editor.node('Min', [atLeast, hi], { hint })
    }
    const f = (t: string, h: string) => editor.node('Cast', [t], { attrs: { to: FLOAT }, hint: h })
    const atLeast = editor.node('Max', [f(x, `${hint}/x`), f(lo, `${hint}/lo`)], {
      hint: `${hint}_lo`,
    })
    const clamped = editor.node('Min', [atLeast, f(hi, `${hint}/hi`)], { hint: `${hint}/f` })
    return editor.node('Cast', [clamped], { attrs: { to: INT64 }, hint })
  }

  /** Softmax over the last axis of a 2-D tensor. */
  softmax(x: string, hint: string): string {
    return this.editor.node('Softmax', [x], { attrs: { axis: this.opset >= 11 ? -1 : 1 }, hint })
  }

  scalar(value: number, hint = 'const'): string {
    return this.editor.float(hint, Float32Array.of(value), [])
  }
}
