/**
 * The rewrite's output, byte for byte, for the builder's test models in every configuration it distinguishes.
 * The table was taken when rewriteTwinGraph was split into its steps (issue #20): the split left every graph
 * byte-identical to the 360-line function before it, and the abstain control (issue #18) then added its nodes
 * to the twin graphs (the variant graphs, which have no controls, are still those of that function; the twin
 * graphs compute exactly its outputs, max |Δ| 0, when no row sets abstain_below).
 *
 * A change that alters the emitted graph on purpose (an opset-aware form of an op, a new control) updates this
 * table in the same commit and says why; any other change here is a regression of the rewrite. The top-k gather
 * rows changed with issue #18: σ folded into the Vᵀ table, one per-row scale per graph, and bias corrections
 * carried by the gathered product (folded-biases.ts); topk-gather.test.ts checks them against the dense graph.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { emitRewriteCase, type RewriteCase } from '../../../test-support/rewrite-fixtures.ts'

const GOLDEN: [string, RewriteCase, string][] = [
  ['MLP, dense', { kind: 'mlp' }, 'ccc5625fcfd902b7'],
  ['transformer block, dense', { kind: 'block' }, '0cde55fad0d91a78'],
  ['MLP, top-2 gather', { kind: 'mlp', topk: 2 }, '55b4eabee3abc8e4'],
  ['block, top-2 gather', { kind: 'block', topk: 2 }, '225ff2d1834479d4'],
  ['block, top-1 gather, float16', { kind: 'block', topk: 1, half: true }, '4772f723fcf994d7'],
  ['MLP, float16, MLP router', { kind: 'mlp', half: true, mlpRouter: true }, '8e182ffd4e947715'],
  ['MLP variant graph', { kind: 'mlp', controls: 'router', mlpRouter: true }, 'b71edec0f7963978'],
  [
    'block variant graph, float16',
    { kind: 'block', controls: 'router', half: true },
    '694874964bb17d38',
  ],
  [
    'block, router on a rewritten rank-3 tensor (copied, pooled)',
    { kind: 'block', feature: 'layernormalization_1' },
    '34404e448705e5f0',
  ],
  ['block, router on the input (pooled)', { kind: 'block', feature: 'x' }, '4d7c8c2e70eb7322'],
  ['MLP, uneven ranks, dense', { kind: 'mlp', uneven: true }, '3d494b5d9f5abdb6'],
  [
    'MLP, uneven ranks, top-2 gather',
    { kind: 'mlp', uneven: true, topk: 2, mlpRouter: true },
    'e229494d4b2683bf',
  ],
  [
    'block, uneven ranks, top-1 gather',
    { kind: 'block', uneven: true, topk: 1 },
    'aa7d642ce9905d92',
  ],
  [
    'block, uneven ranks, float16, dense',
    { kind: 'block', uneven: true, half: true },
    '238a98b43474b135',
  ],
]

describe('twin-graph rewrite, byte for byte', () => {
  for (const [label, c, digest] of GOLDEN)
    it(label, async () => {
      const bytes = await emitRewriteCase(c)
      expect(createHash('sha256').update(bytes).digest('hex').slice(0, 16)).toBe(digest)
    })
})
