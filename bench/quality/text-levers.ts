/**
 * The text twin's levers toward the 97 % normalised, each a recipe option, measured one stage at a time
 * on the text zoo's VALIDATION splits (test stays for the report), each stage keeping the previous stage's pick:
 * 1. the router: which tensor it reads (an earlier tensor is cheaper to compute), its width and training,
 *    prototype vs trained (first: the router is what stands between the twin and its experts' accuracy);
 * 2. the shared merge the router reads (task arithmetic λ): a one-hot mix is the expert whatever the shared model
 *    is (full-rank corrections), so λ acts through the router's features and the soft mixes;
 * 3. the rank of the exclusive factors (bytes against the one-hot reproduction error).
 * The stages start from the committed recipe as first written (λ 0.3, MLP [64] on `/Div_output_0`, rank 64).
 * Measured once and left out to keep the run short on 2 cores (validation, routed normalised, router [64] on
 * `/Div_output_0`): λ 0.6 82.5 % and λ 1 72.8 % (router accuracy 71 % and 51 %: the more the shared model is
 * merged, the worse its features separate the tasks); block 2's FFN activation 89.1 %.
 * @module
 */
import type { LeverStage } from './levers.ts'

/** Tensors of the zoo's graph (README "What a builder needs"), earliest first. */
export const TEXT_FEATURES = {
  /** Token + position embeddings, before the first LayerNorm: a bag of embeddings, routed before any block. */
  embeddings: '/Add_output_0',
  /** Output of block 0 (after its second LayerNorm). */
  block0: '/blocks.0/ln2/Add_1_output_0',
  /** Block 0's FFN activation (GELU), 256 wide. */
  block0Ffn: '/blocks.0/Mul_1_output_0',
  block1: '/blocks.1/ln2/Add_1_output_0',
  /** The default: the mask-aware mean-pooled final hidden state (the head's input). */
  pooled: '/Div_output_0',
} as const

const ta = (lambda: number) => ({ method: 'task_arithmetic' as const, lambda })

export const TEXT_LEVER_STAGES: readonly LeverStage[] = [
  {
    name: 'router',
    arms: [
      { label: `MLP [64] on ${TEXT_FEATURES.pooled}`, change: {} },
      {
        label: `MLP [64] on ${TEXT_FEATURES.embeddings} (before block 0)`,
        change: { router: { feature: TEXT_FEATURES.embeddings } },
      },
      {
        label: `MLP [64] on ${TEXT_FEATURES.block0}`,
        change: { router: { feature: TEXT_FEATURES.block0 } },
      },
      {
        label: `MLP [64] on ${TEXT_FEATURES.block0Ffn} (256 wide)`,
        change: { router: { feature: TEXT_FEATURES.block0Ffn } },
      },
      {
        label: `MLP [64] on ${TEXT_FEATURES.block1}`,
        change: { router: { feature: TEXT_FEATURES.block1 } },
      },
      {
        label: 'MLP [256], 80 epochs, patience 15',
        change: { router: { hidden: [256], epochs: 80, patience: 15 } },
      },
      { label: 'prototype router (no training)', change: { router: { kind: 'prototype' } } },
    ],
  },
  {
    name: 'shared merge',
    arms: [
      { label: 'task arithmetic λ=0.3 (Twin-Merging default)', change: { shared: ta(0.3) } },
      { label: 'task arithmetic λ=0.1', change: { shared: ta(0.1) } },
      { label: 'the base (task arithmetic λ=0)', change: { shared: ta(0) } },
    ],
  },
  {
    name: 'rank',
    arms: [
      { label: 'rank 64 (full), float16', change: { exclusive: { rank: 64, dtype: 'float16' } } },
      { label: 'rank 32, float16', change: { exclusive: { rank: 32, dtype: 'float16' } } },
    ],
  },
]
