/**
 * Steps 3 and 6 of the rewrite, and what steps 4 and 5 add to in between. Step 3 renames the first output of
 * every node that gets a correction to `<y>/shared`; steps 4 and 5 add correction terms per node; step 6 sums
 * them back into the original name `y`, so every consumer of `y` sees the corrected value and, with all-zero
 * weights, the shared model bit for bit.
 *
 * Per-row terms are [batch, K] and broadcast to the node's output by its row layout: unsqueezed for
 * [batch, …, d], or repeated per row when an exporter flattened [batch, seq, d] to [batch·seq, d] (e.g. before a
 * Gemm).
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { INodeProto } from '../../onnx/proto.ts'
import type { RowLayout } from '../graph/row-layout.ts'
import type { RewriteContext } from './rewrite-context.ts'

export class Corrections {
  /** Node index → the name consumers read (its original first output). */
  private readonly finalName = new Map<number, string>()
  /** Node index → the renamed output: the shared computation. */
  private readonly sharedName = new Map<number, string>()
  private readonly terms = new Map<number, string[]>()
  /** Broadcast tensors, keyed by source and layout (one per layout, not one per use). */
  private readonly aligned = new Map<string, string>()

  /** Step 3: renames each corrected node's first output. */
  constructor(private readonly ctx: RewriteContext) {
    for (const i of ctx.corrected) {
      const n = ctx.original[i] as INodeProto
      const y = n.output?.[0] ?? ''
      this.finalName.set(i, y)
      const shared = ctx.editor.fresh(`${y}/shared`)
      this.sharedName.set(i, shared)
      n.output = [shared, ...(n.output ?? []).slice(1)]
    }
  }

  /** The shared computation's output of a corrected node. */
  sharedOutput(node: number): string {
    return this.sharedName.get(node) ?? ''
  }

  add(node: number, term: string): void {
    this.terms.set(node, [...(this.terms.get(node) ?? []), term])
  }

  private layoutOf(node: number): RowLayout {
    const y = this.finalName.get(node) ?? ''
    const layout = this.ctx.options.layouts.get(y)
    if (!layout)
      throw new AppError(
        'INVALID_MODEL',
        `no shape information for '${y}' (internal: probe it first)`,
      )
    return layout
  }

  /** Broadcasts a per-row [batch, K] tensor to the output of corrected node `node`. */
  alignRows(t: string, node: number): string {
    const layout = this.layoutOf(node)
    const key =
      layout.mode === 'lead' ? `${t}|lead|${layout.rank}` : `${t}|flat|${this.sharedOutput(node)}`
    const hit = this.aligned.get(key)
    if (hit) return hit
    const out =
      layout.mode === 'lead'
        ? this.ctx.ops.unsqueeze(
            t,
            Array.from({ length: layout.rank - 2 }, (_, j) => j + 1),
            'align',
          )
        : this.repeatPerRow(t, this.sharedOutput(node))
    this.aligned.set(key, out)
    return out
  }

  /**
   * [batch, K] → [batch·k, K], row-major over (batch, k), k = rows of `target` per example: the layout of a
   * [batch, seq, d] → [batch·seq, d] reshape.
   */
  private repeatPerRow(t: string, target: string): string {
    const { editor, ops } = this.ctx
    const zero = editor.int64('align/i0', [0])
    const oneIdx = editor.int64('align/i1', [1])
    const shapeT = editor.node('Shape', [t], { hint: 'align/shape_w' })
    const bDim = editor.node('Gather', [shapeT, zero], { attrs: { axis: 0 }, hint: 'align/b' })
    const kDim = editor.node('Gather', [shapeT, oneIdx], { attrs: { axis: 0 }, hint: 'align/k' })
    const targetShape = editor.node('Shape', [target], { hint: 'align/shape_y' })
    const nDim = editor.node('Gather', [targetShape, zero], { attrs: { axis: 0 }, hint: 'align/n' })
    const per = editor.node('Div', [nDim, bDim], { hint: 'align/per' })
    const full = editor.node('Concat', [bDim, per, kDim], {
      attrs: { axis: 0 },
      hint: 'align/full',
    })
    const expanded = editor.node('Expand', [ops.unsqueeze(t, [1], 'align'), full], {
      hint: 'align/expand',
    })
    const flat = editor.node('Concat', [editor.int64('align/minus1', [-1]), kDim], {
      attrs: { axis: 0 },
      hint: 'align/flat',
    })
    return editor.node('Reshape', [expanded, flat], { hint: 'align/rows' })
  }

  /** Step 6: sums each node's terms into its original output name. */
  sumIntoOutputs(): void {
    const { editor } = this.ctx
    for (const i of this.ctx.corrected) {
      const terms = this.terms.get(i) ?? []
      const y = this.finalName.get(i) ?? ''
      let acc = this.sharedOutput(i)
      terms.forEach((c, j) => {
        acc = editor.node(
          'Add',
          [acc, c],
          j === terms.length - 1 ? { outputs: [y] } : { hint: `${y}/partial` },
        )
      })
      if (terms.length === 0) editor.node('Identity', [acc], { outputs: [y] })
    }
  }
}
