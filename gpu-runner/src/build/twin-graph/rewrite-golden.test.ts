/**
 * The rewrite's output, byte for byte, for the builder's test models in every configuration it distinguishes.
 * The table was taken when rewriteTwinGraph was split into its steps (issue #20): the split left every graph
 * byte-identical to the 360-line function before it, and the abstain control (issue #18) then added its nodes
 * to the twin graphs (the variant graphs, which have no controls, are still those of that function).
 *
 * A change that alters the emitted graph on purpose (an opset-aware form of an op, a new control) updates this
 * table in the same commit and says why; any other change here is a regression of the rewrite.
 */
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { emitRewriteCase, type RewriteCase } from '../../../test-support/rewrite-fixtures.ts'

const GOLDEN: [string, RewriteCase, string][] = [
  ['MLP, dense', { kind: 'mlp' }, '1f210ae3c8c5b88f'],
  ['transformer block, dense', { kind: 'block' }, '13f6ab86a02f0cf8'],
  ['MLP, top-2 gather', { kind: 'mlp', topk: 2 }, 'cd8ef0a7ed2ca4ac'],
  ['block, top-2 gather', { kind: 'block', topk: 2 }, '0b1e842ef83a85c9'],
  ['block, top-1 gather, float16', { kind: 'block', topk: 1, half: true }, 'e608ffe87f8af6da'],
  ['MLP, float16, MLP router', { kind: 'mlp', half: true, mlpRouter: true }, '0f74fa86a9ac824b'],
  ['MLP variant graph', { kind: 'mlp', controls: 'router', mlpRouter: true }, 'b71edec0f7963978'],
  [
    'block variant graph, float16',
    { kind: 'block', controls: 'router', half: true },
    '694874964bb17d38',
  ],
  [
    'block, router on a rewritten rank-3 tensor (copied, pooled)',
    { kind: 'block', feature: 'layernormalization_1' },
    'dd0675c0f7929068',
  ],
  ['block, router on the input (pooled)', { kind: 'block', feature: 'x' }, 'b58083cf0132919e'],
  ['MLP, uneven ranks, dense', { kind: 'mlp', uneven: true }, '273068bd9b591a45'],
  [
    'MLP, uneven ranks, top-2 gather',
    { kind: 'mlp', uneven: true, topk: 2, mlpRouter: true },
    '65f4eb14346f3b05',
  ],
  [
    'block, uneven ranks, top-1 gather',
    { kind: 'block', uneven: true, topk: 1 },
    '2b3a1054f4d59a1c',
  ],
  [
    'block, uneven ranks, float16, dense',
    { kind: 'block', uneven: true, half: true },
    'f0391a1aa001b31a',
  ],
]

describe('twin-graph rewrite, byte for byte', () => {
  for (const [label, c, digest] of GOLDEN)
    it(label, async () => {
      const bytes = await emitRewriteCase(c)
      expect(createHash('sha256').update(bytes).digest('hex').slice(0, 16)).toBe(digest)
    })
})
