/**
 * Steps 3 and 6 of the rewrite, and what steps 4 and 5 add to in between. Step 3 renames the first output of
 * every node that gets a correction to `<y>/shared`; steps 4 and 5 add correction terms per node; step 6 sums
 * them back into the original name `y`, so every consumer of `y` sees the corrected value and, with all-zero
 * weights, the shared model bit for bit.
 *
 * Per-row terms are [batch, K] and broadcast to the node's output by its row layout (graph/row-layout.ts):
 * unsqueezed around the batch's axis when the batch is alone on it ([batch, seq, d], [seq, batch, d]), or repeated
 * per position when an exporter flattened it with other sizes ([batch·seq, d] before a Gemm, [seq·batch, d] in
 * nn.MultiheadAttention's output projection).
 * @module
 */
import { AppError } from '@twinserve/shared'
import type { INodeProto } from '../../onnx/proto.ts'
import { isAlone, type RowLayout } from '../graph/row-layout.ts'
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

  /** The layout of a corrected node's output (retargeted past outputs without the batch, so never 'shared'). */
  layoutOf(node: number): RowLayout {
    const y = this.finalName.get(node) ?? ''
    const layout = this.ctx.options.layouts.get(y)
    if (layout?.kind !== 'rows')
      throw new AppError('INTERNAL', `no batch layout for corrected tensor '${y}'`)
    return layout
  }

  /** Broadcasts a per-row [batch, K] tensor to the output of corrected node `node`. */
  alignRows(t: string, node: number): string {
    const layout = this.layoutOf(node)
    const alone = isAlone(layout)
    const key = alone
      ? `${t}|axis${layout.axis}|${layout.rank}`
      : `${t}|rows|${this.sharedOutput(node)}`
    const hit = this.aligned.get(key)
    if (hit) return hit
    // Every axis but the batch's and the last (where K goes) gets size 1.
    const others = Array.from({ length: layout.rank - 1 }, (_, j) => j).filter(
      (j) => j !== layout.axis,
    )
    const rows = alone ? t : this.repeatPerRow(t, this.sharedOutput(node), layout)
    const out = this.ctx.ops.unsqueeze(rows, others, 'align')
    this.aligned.set(key, out)
    return out
  }

  /**
   * [batch, K] → [n, K] along a batch axis of n = outer·batch·inner positions (row-major: each batch row repeated
   * `inner` times in a row, the whole batch `outer` times), e.g. `[batch·seq, d]` (outer 1) or `[seq·batch, d]`
   * (inner 1). The size not fixed in the layout is the axis's dim over the others, at run time.
   */
  private repeatPerRow(t: string, target: string, layout: RowLayout): string {
    const { editor, ops } = this.ctx
    const zero = editor.int64('align/i0', [0])
    const oneIdx = editor.int64('align/i1', [1])
    const shapeT = editor.node('Shape', [t], { hint: 'align/shape_w' })
    const bDim = editor.node('Gather', [shapeT, zero], { attrs: { axis: 0 }, hint: 'align/b' })
    const kDim = editor.node('Gather', [shapeT, oneIdx], { attrs: { axis: 0 }, hint: 'align/k' })
    const targetShape = editor.node('Shape', [target], { hint: 'align/shape_y' })
    const axisIdx = layout.axis === 0 ? zero : editor.int64('align/axis', [layout.axis])
    const nDim = editor.node('Gather', [targetShape, axisIdx], {
      attrs: { axis: 0 },
      hint: 'align/n',
    })
    let expanded: string
    if (layout.outer.fixed && layout.outer.size === 1) {
      const per = editor.node('Div', [nDim, bDim], { hint: 'align/per' })
      const full = editor.node('Concat', [bDim, per, kDim], {
        attrs: { axis: 0 },
        hint: 'align/full',
      })
      expanded = editor.node('Expand', [ops.unsqueeze(t, [1], 'align'), full], {
        hint: 'align/expand',
      })
    } else {
      const known = layout.outer.fixed ? layout.outer : layout.inner
      const fixed = editor.int64('align/fixed', [known.size])
      const other = editor.node(
        'Div',
        [nDim, editor.node('Mul', [bDim, fixed], { hint: 'align/bf' })],
        {
          hint: 'align/other',
        },
      )
      const [outer, inner] = layout.outer.fixed ? [fixed, other] : [other, fixed]
      const full = editor.node('Concat', [outer, bDim, inner, kDim], {
        attrs: { axis: 0 },
        hint: 'align/full',
      })
      expanded = editor.node('Expand', [ops.unsqueeze(t, [0, 2], 'align'), full], {
        hint: 'align/expand',
      })
    }
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
