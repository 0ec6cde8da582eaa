/**
 * Versioned rollouts (issue #19): which package version of a model the gateway routes to, with a canary
 * version taking a sticky share of callers, and automatic rollback when the canary crosses a guardrail.
 *
 *   PUT  /admin/models/{m}/rollout           SetRolloutRequest → Rollout
 *   GET  /admin/models/{m}/rollout           → Rollout
 *   POST /admin/models/{m}/rollout/promote   → Rollout (canary becomes stable)
 *   POST /admin/models/{m}/rollout/rollback  → Rollout (all traffic back to stable)
 *   GET  /admin/rollouts                     → RolloutList
 * @module
 */
import { z } from 'zod'
import { GuardrailsSchema } from './experiments.ts'
import { NameSchema } from './twin-package.ts'

/** Names the package version that served an inference answer (the rollout's stable or canary). */
export const MODEL_VERSION_HEADER = 'x-twinserve-model-version'

/** A package version id as runners announce it (RunnerModelSchema.version). */
export const ModelVersionSchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/,
    'letters, digits, dot, dash, underscore; 1-128 chars',
  )

/** A runner group (runner flag --group); runners that name none are in DEFAULT_RUNNER_GROUP. */
export const RunnerGroupSchema = NameSchema
export const DEFAULT_RUNNER_GROUP = 'default'

export const ROLLOUT_STATES = ['active', 'rolled_back', 'promoted'] as const
export type RolloutState = (typeof ROLLOUT_STATES)[number]
export const ROLLOUT_ARMS = ['stable', 'canary'] as const
export type RolloutArm = (typeof ROLLOUT_ARMS)[number]

/**
 * A rollout's guardrails: the experiments' (GuardrailsSchema), with defaults fit for a canary: a canary that
 * answers more than 5% 5xx over its last 500 requests (after 50) is rolled back.
 */
export const RolloutGuardrailsSchema = GuardrailsSchema.default({
  max_error_rate: 0.05,
  min_samples: 50,
  window: 500,
})

export const SetRolloutRequestSchema = z
  .strictObject({
    stable: ModelVersionSchema,
    canary: ModelVersionSchema.optional(),
    /** Share of callers (sticky per API key and x-twinserve-user) routed to the canary, in percent. */
    canary_percent: z.number().min(0).max(100),
    /** Only runners of this group serve the model's traffic; absent: any runner announcing the version. */
    group: RunnerGroupSchema.optional(),
    guardrails: RolloutGuardrailsSchema,
    /** Level of the always-valid test of the canary's error rate against the stable's. */
    alpha: z.number().gt(0).lt(0.5).default(0.05),
  })
  .superRefine((r, ctx) => {
    if (r.canary_percent > 0 && r.canary === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['canary'],
        message: `canary_percent ${r.canary_percent} needs a canary version`,
      })
    if (r.canary !== undefined && r.canary === r.stable)
      ctx.addIssue({
        code: 'custom',
        path: ['canary'],
        message: `canary '${r.canary}' is the stable version itself`,
      })
  })
export type SetRolloutRequest = z.output<typeof SetRolloutRequestSchema>
export type SetRolloutRequestInput = z.input<typeof SetRolloutRequestSchema>

export const RolloutArmStatsSchema = z.object({
  version: ModelVersionSchema.nullable(),
  requests: z.number().int().nonnegative(),
  /** Answers that were the runner's fault (5xx, timeouts); a caller's 4xx is not one. */
  errors: z.number().int().nonnegative(),
  error_rate: z.number().min(0).max(1).nullable(),
  mean_latency_ms: z.number().nonnegative().nullable(),
  /** p95 over the guardrail window (the most recent requests). */
  p95_latency_ms: z.number().nonnegative().nullable(),
})
export type RolloutArmStats = z.infer<typeof RolloutArmStatsSchema>

export const RolloutSchema = z.object({
  model: NameSchema,
  /** Changes when the stable or canary version does: outcomes are counted per id. */
  id: z.string(),
  stable: ModelVersionSchema,
  canary: ModelVersionSchema.nullable(),
  canary_percent: z.number().min(0).max(100),
  group: RunnerGroupSchema.nullable(),
  guardrails: GuardrailsSchema,
  alpha: z.number(),
  state: z.enum(ROLLOUT_STATES),
  /** Why the state is what it is (a guardrail's verdict, or who rolled back or promoted). */
  reason: z.string().nullable(),
  arms: z.object({ stable: RolloutArmStatsSchema, canary: RolloutArmStatsSchema }),
  /** Always-valid p-value of "the canary's error rate equals the stable's" (mSPRT); 1 before enough data. */
  p_value: z.number().min(0).max(1),
  created_at: z.iso.datetime(),
  updated_at: z.iso.datetime(),
})
export type Rollout = z.infer<typeof RolloutSchema>

export const RolloutListSchema = z.object({ rollouts: z.array(RolloutSchema) })
export type RolloutList = z.infer<typeof RolloutListSchema>
