/**
 * Quality per byte of the bundled demo package: the levers measured one stage at a time on the zoo's
 * VALIDATION split (test stays for the report), each stage keeping the previous stage's pick.
 * 1. storage (accuracy should not move): drop the separate shared-variant file, store factors as float16;
 * 2. router: width, how much routing data it trains on, which tensor it reads, prototype vs trained;
 * 3. rank allocation within what is left of the byte budget: uniform ranks, per-tensor ranks (more rank where a
 *    rank costs fewer bytes), energy targets.
 * A stage's pick is the arm with the best routed normalised accuracy among those inside the budget (ties: fewer
 * bytes). The stages start from the previous demo configuration (rank 12, float32, shared file, router on
 * `hidden1` with 64 hidden units, 500 routing examples per task, 20% held out).
 * @module
 */
import type { RecipeChange } from './twin-arms.ts'

export interface LeverArm {
  label: string
  change: RecipeChange
}

export interface LeverStage {
  name: string
  /** Arms are applied on top of the previous stages' picks. */
  arms: readonly LeverArm[]
  /** Storage arms are cumulative steps, not alternatives: the stage keeps its last arm. */
  cumulative?: boolean
}

/** The previous demo router: 64 hidden units, the first 500 routing examples per task, 20% held out. */
const PREVIOUS_ROUTER = {
  feature: 'hidden1',
  hidden: [64],
  max_per_expert: 500,
  heldout_fraction: 0.2,
  validation_fraction: 0.1,
  epochs: 40,
  lr: 0.002,
  patience: 8,
}

export const PREVIOUS_DEMO: RecipeChange = {
  shared_file: true,
  exclusive: { rank: 12, dtype: 'float32' },
  router: PREVIOUS_ROUTER,
}

const half = (e: Record<string, unknown>) => ({ ...e, dtype: 'float16' as const })

export const LEVER_STAGES: readonly LeverStage[] = [
  {
    name: 'storage',
    cumulative: true,
    arms: [
      { label: 'previous demo (rank 12, float32, shared file)', change: PREVIOUS_DEMO },
      { label: 'no shared-variant file', change: { shared_file: false } },
      { label: 'float16 factors', change: { exclusive: half({ rank: 12 }) } },
    ],
  },
  {
    // Before rank: the router's choice does not depend on the rank (it reads the shared model), and a better
    // router is the cheaper gain per byte, so the rank stage spends what the router leaves of the budget.
    name: 'router',
    arms: [
      { label: 'previous router', change: { router: PREVIOUS_ROUTER } },
      {
        label: 'hidden 128, 10% held out',
        change: { router: { hidden: [128], heldout_fraction: 0.1 } },
      },
      {
        label: 'hidden 256, 10% held out',
        change: { router: { hidden: [256], heldout_fraction: 0.1 } },
      },
      {
        label: 'all routing data (2,000 per task)',
        change: { router: { max_per_expert: undefined } },
      },
      {
        label: 'all data, hidden 128, 10% held out',
        change: { router: { max_per_expert: undefined, hidden: [128], heldout_fraction: 0.1 } },
      },
      {
        label: 'all data, hidden 128, 10% held out, lr 1e-3, 60 epochs',
        change: {
          router: {
            max_per_expert: undefined,
            hidden: [128],
            heldout_fraction: 0.1,
            lr: 0.001,
            epochs: 60,
            patience: 10,
          },
        },
      },
      {
        label: 'all data, hidden 128, from pixels',
        change: {
          router: {
            max_per_expert: undefined,
            hidden: [128],
            heldout_fraction: 0.1,
            feature: 'pixels',
          },
        },
      },
      {
        label: 'all data, hidden 128, from hidden2',
        change: {
          router: {
            max_per_expert: undefined,
            hidden: [128],
            heldout_fraction: 0.1,
            feature: 'hidden2',
          },
        },
      },
      {
        label: 'prototype router (no training), all data',
        change: { router: { max_per_expert: undefined, kind: 'prototype', heldout_fraction: 0.1 } },
      },
    ],
  },
  {
    // The 128×10 head is always at its full rank 10 (ranks are capped at min(rows, cols)), so it is exact.
    name: 'rank allocation',
    arms: [
      { label: 'rank 32', change: { exclusive: half({ rank: 32 }) } },
      { label: 'rank 48', change: { exclusive: half({ rank: 48 }) } },
      { label: 'rank 64', change: { exclusive: half({ rank: 64 }) } },
      { label: 'rank 72', change: { exclusive: half({ rank: 72 }) } },
      { label: 'rank 80', change: { exclusive: half({ rank: 80 }) } },
      {
        label: 'fc1 96, fc2 32',
        change: { exclusive: half({ rank: 96, tensors: [{ match: 'fc2.weight', rank: 32 }] }) },
      },
      {
        label: 'fc1 80, fc2 64',
        change: { exclusive: half({ rank: 80, tensors: [{ match: 'fc2.weight', rank: 64 }] }) },
      },
      {
        label: 'fc1 48, fc2 128 (full)',
        change: { exclusive: half({ rank: 48, tensors: [{ match: 'fc2.weight', rank: 128 }] }) },
      },
      { label: 'energy 0.8 per tensor and expert', change: { exclusive: half({ energy: 0.8 }) } },
      { label: 'energy 0.9 per tensor and expert', change: { exclusive: half({ energy: 0.9 }) } },
    ],
  },
]
