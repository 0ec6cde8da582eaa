/**
 * Node emitters whose form changed across ONNX opsets (axes moved from attributes to inputs: Unsqueeze and
 * ReduceSum at 13, ReduceMean and ReduceMax at 18). The rewrite keeps the base model's opset, because raising it could change
 * the meaning of the nodes already there.
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { IModelProto } from '../../onnx/proto.ts'
import { toNumber } from '../../onnx/proto.ts'
import type { GraphEditor } from './graph-editor.ts'

/** Lowest default-domain opset the rewrite emits for (GatherElements 11, int64 Max and GreaterOrEqual 12). */
export const MIN_OPSET = 13

export function defaultOpset(model: IModelProto): number {
  const entry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')
  return entry?.version == null ? 1 : toNumber(entry.version)
}

export function checkOpset(model: IModelProto, label: string): number {
  const v = defaultOpset(model)
  if (v < MIN_OPSET)
    throw new AppError(
      'INVALID_MODEL',
      `${label} uses ONNX opset ${v}; the twin rewrite needs opset ${MIN_OPSET} or newer (re-export the models with a newer opset)`,
    )
  return v
}

export class Ops {
  constructor(
    private readonly editor: GraphEditor,
    private readonly opset: number,
  ) {}

  unsqueeze(x: string, axes: readonly number[], hint = 'unsqueeze'): string {
    if (axes.length === 0) return x
    const a = this.editor.int64(`${hint}_axes`, [...axes])
    return this.editor.node('Unsqueeze', [x, a], { hint })
  }

  private reduce(
    op: 'ReduceSum' | 'ReduceMean' | 'ReduceMax',
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

  scalar(value: number, hint = 'const'): string {
    return this.editor.float(hint, Float32Array.of(value), [])
  }
}
