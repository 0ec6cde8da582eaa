/**
 * A/B experiments on merge strategies: the gateway splits a model's traffic between arms (each a set of merge
 * controls the runner understands), records every exposure, takes outcome feedback and reports per-arm
 * statistics with always-valid p-values against the control.
 *
 *   POST /admin/experiments                 CreateExperimentRequest → 201 Experiment (draft)
 *   GET  /admin/experiments                 ?model=…&status=… → ExperimentList
 *   GET  /admin/experiments/{id}            → Experiment
 *   POST /admin/experiments/{id}/start      → Experiment (running; one running experiment per model)
 *   POST /admin/experiments/{id}/stop       StopExperimentRequest → Experiment (stopped)
 *   PUT  /admin/experiments/{id}/weights    UpdateWeightsRequest → Experiment (units in unchanged arms stay)
 *   POST /admin/experiments/{id}/arms       ArmConfig → 201 Experiment (a new arm, appended)
 *   GET  /admin/experiments/{id}/results    → ExperimentResults
 *   POST /v1/feedback                       FeedbackRequest → FeedbackResponse
 * @see https://arxiv.org/abs/1512.04922 (Johari, Pekelis, Walsh: always valid inference, mSPRT)
 * @module
 */
import { z } from 'zod'
import { REQUEST_ID_HEADER, REQUEST_ID_PATTERN } from '../http.ts'
import { ParametersSchema } from './inference.ts'
import { MergeControlsSchema } from './merge-controls.ts'
import { NameSchema } from './twin-package.ts'

/** Response header naming the arm that served a request; as a request header, pins an arm (admin keys only). */
export const ARM_HEADER = 'x-twinserve-arm'
/** Response header naming the experiment a request was exposed to. */
export const EXPERIMENT_HEADER = 'x-twinserve-experiment'
/** Request header carrying the caller's end-user id, for experiments whose unit is `user_id`. */
export const USER_ID_HEADER = 'x-twinserve-user'
/** Units hash into this many buckets; weights are percentages, so one bucket is 0.01% of units. */
export const EXPERIMENT_BUCKETS = 10_000

export const EXPERIMENT_UNITS = ['api_key', 'user_id'] as const
export const EXPERIMENT_MODES = ['fixed', 'thompson'] as const
export const EXPERIMENT_STATUSES = ['draft', 'running', 'stopped'] as const
export const ARM_STATUSES = ['active', 'stopped'] as const
export const ARM_DECISIONS = [
  'control',
  'keep_running',
  'arm_better',
  'arm_worse',
  'guardrail_stop',
] as const

export const ExperimentIdSchema = z
  .string()
  .regex(/^exp_[0-9a-f]{16}$/, 'an experiment id like exp_0123456789abcdef')
/** A user id as sent in x-twinserve-user: opaque, printable, short (it is stored with each exposure). */
export const UserIdSchema = z
  .string()
  .regex(/^[\x21-\x7e]{1,128}$/, 'printable ASCII without spaces, 1-128 chars')
/**
 * What feedback refers to: the gateway's request id (x-request-id), or a generation's completion id as the
 * OpenAI routes return it (`cmpl-…`, `chatcmpl-…`: the runner's prefix on the request id, so it may run longer
 * than a request id by the prefix).
 */
export const FeedbackRequestIdSchema = z
  .string()
  .refine(
    (id) =>
      REQUEST_ID_PATTERN.test(id) ||
      (/^(chat)?cmpl-/.test(id) && REQUEST_ID_PATTERN.test(id.replace(/^(chat)?cmpl-/, ''))),
    `a request id as the gateway returned it in ${REQUEST_ID_HEADER}, or a completion's id (cmpl-…, chatcmpl-…)`,
  )

/** Merge controls (merge-controls.ts), kept as written so the forwarded request carries exactly these. */
const ArmParametersSchema = ParametersSchema.superRefine((p, ctx) => {
  // A fan-out answers every expert's outputs under new names: not an arm its users could be served by.
  if (p.fan_out === true)
    ctx.addIssue({
      code: 'custom',
      path: ['fan_out'],
      message:
        'an arm cannot fan out: its users would get every expert’s outputs instead of one answer',
    })
  const parsed = MergeControlsSchema.safeParse(p)
  if (!parsed.success)
    for (const issue of parsed.error.issues)
      ctx.addIssue({
        code: 'custom',
        path: issue.path,
        message:
          issue.code === 'unrecognized_keys'
            ? `unknown merge control(s) ${issue.keys.join(', ')}`
            : issue.message,
      })
})

const percent = z.number().min(0).max(100)

export const ArmConfigSchema = z.strictObject({
  name: NameSchema,
  /** Percentage of units assigned to this arm (all arms together ≤ 100; the rest are not enrolled). */
  weight: percent,
  /** Exactly one arm is the control the others are compared with. */
  control: z.boolean().default(false),
  /** The merge controls this arm applies to each forwarded request, e.g. {"variant": "ties"} or {} (router). */
  parameters: ArmParametersSchema.default({}),
  description: z.string().max(200).optional(),
})
export type ArmConfig = z.output<typeof ArmConfigSchema>
export type ArmConfigInput = z.input<typeof ArmConfigSchema>

export const GuardrailsSchema = z.strictObject({
  /** Stop an arm whose share of 5xx answers over its recent exposures exceeds this. */
  max_error_rate: z.number().gt(0).lte(1).optional(),
  /** Stop an arm whose p95 gateway latency over its recent exposures exceeds this. */
  max_p95_latency_ms: z.number().positive().max(3_600_000).optional(),
  /** No verdict before an arm has this many exposures. */
  min_samples: z.number().int().min(1).max(1_000_000).default(100),
  /** The guardrails look at each arm's most recent `window` exposures. */
  window: z.number().int().min(1).max(100_000).default(1000),
})
export type Guardrails = z.output<typeof GuardrailsSchema>

export const StatisticsConfigSchema = z.strictObject({
  /** Significance level of the always-valid test (split evenly over the arms compared with the control). */
  alpha: z.number().gt(0).lt(0.5).default(0.05),
  /**
   * Standard deviation τ of the normal mixture over the reward difference in the mSPRT: about the size of
   * effect you expect (rewards are in [0, 1]).
   */
  mixture_sd: z.number().positive().max(1).default(0.1),
  /** Rewards each arm needs before the sequential test starts (its variance estimate needs a few). */
  burn_in: z.number().int().min(2).max(100_000).default(20),
})
export type StatisticsConfig = z.output<typeof StatisticsConfigSchema>

export const BanditConfigSchema = z.strictObject({
  /** Floor, in percent of the enrolled units, that every active arm keeps (exploration). */
  min_share: z.number().min(0).max(50).default(5),
  /** Rewards between two re-allocations of traffic. */
  update_every: z.number().int().min(1).max(100_000).default(20),
})
export type BanditConfig = z.output<typeof BanditConfigSchema>

export const CreateExperimentRequestSchema = z
  .strictObject({
    name: z.string().min(1).max(128),
    model: NameSchema,
    /** What is assigned: the calling API key, or the end user named in x-twinserve-user. */
    unit: z.enum(EXPERIMENT_UNITS).default('api_key'),
    /** `fixed`: the configured split; `thompson`: traffic shifts toward arms with better rewards. */
    mode: z.enum(EXPERIMENT_MODES).default('fixed'),
    arms: z.array(ArmConfigSchema).min(2).max(16),
    guardrails: GuardrailsSchema.default({ min_samples: 100, window: 1000 }),
    statistics: StatisticsConfigSchema.default({ alpha: 0.05, mixture_sd: 0.1, burn_in: 20 }),
    bandit: BanditConfigSchema.default({ min_share: 5, update_every: 20 }),
    /** Output tensor whose per-row argmax is the prediction that label feedback is compared with (default: the first). */
    prediction_output: z.string().min(1).max(128).optional(),
  })
  .superRefine((e, ctx) => checkArms(e.arms, ctx, ['arms']))
export type CreateExperimentRequest = z.output<typeof CreateExperimentRequestSchema>
export type CreateExperimentRequestInput = z.input<typeof CreateExperimentRequestSchema>

function checkArms(arms: readonly ArmConfig[], ctx: z.RefinementCtx, path: (string | number)[]) {
  const seen = new Set<string>()
  arms.forEach((a, i) => {
    if (seen.has(a.name))
      ctx.addIssue({ code: 'custom', path: [...path, i, 'name'], message: `arm '${a.name}' twice` })
    seen.add(a.name)
  })
  const controls = arms.filter((a) => a.control).length
  if (controls !== 1)
    ctx.addIssue({
      code: 'custom',
      path,
      message: `exactly one arm must be the control (control: true); ${controls} are`,
    })
  const total = arms.reduce((s, a) => s + a.weight, 0)
  if (total > 100 + 1e-9)
    ctx.addIssue({ code: 'custom', path, message: `weights add up to ${total}%, more than 100%` })
}

export const StopExperimentRequestSchema = z.strictObject({
  reason: z.string().min(1).max(500).optional(),
})

export const UpdateWeightsRequestSchema = z.strictObject({
  /** New weights (percent) by arm name; arms not named keep theirs. */
  weights: z
    .record(NameSchema, percent)
    .refine((w) => Object.keys(w).length > 0, 'name at least one arm'),
})
export type UpdateWeightsRequest = z.output<typeof UpdateWeightsRequestSchema>

/** A bucket range [start, end) owned by the arm at `arm` (its index in `arms`). */
export const BucketRangeSchema = z.tuple([
  z.number().int().min(0),
  z.number().int().min(0),
  z.number().int().min(0),
])
export type BucketRange = z.infer<typeof BucketRangeSchema>

export const ArmSchema = z.object({
  name: NameSchema,
  weight: percent,
  control: z.boolean(),
  parameters: ParametersSchema,
  description: z.string().nullable(),
  status: z.enum(ARM_STATUSES),
  /** Why the arm was stopped (a guardrail names the metric, its value and the limit). */
  stop_reason: z.string().nullable(),
  stopped_at: z.iso.datetime().nullable(),
  /** Buckets (of EXPERIMENT_BUCKETS) the arm holds now; in thompson mode this moves with the posterior. */
  buckets: z.number().int().min(0),
})
export type Arm = z.infer<typeof ArmSchema>

export const ExperimentSchema = z.object({
  id: ExperimentIdSchema,
  name: z.string(),
  model: NameSchema,
  unit: z.enum(EXPERIMENT_UNITS),
  mode: z.enum(EXPERIMENT_MODES),
  status: z.enum(EXPERIMENT_STATUSES),
  /** Hashed with each unit id: a new experiment reshuffles units, the same experiment never does. */
  salt: z.string(),
  arms: z.array(ArmSchema),
  guardrails: GuardrailsSchema,
  statistics: StatisticsConfigSchema,
  bandit: BanditConfigSchema,
  prediction_output: z.string().nullable(),
  created_at: z.iso.datetime(),
  started_at: z.iso.datetime().nullable(),
  stopped_at: z.iso.datetime().nullable(),
  stop_reason: z.string().nullable(),
})
export type Experiment = z.infer<typeof ExperimentSchema>

export const ExperimentListSchema = z.object({ experiments: z.array(ExperimentSchema) })
export type ExperimentList = z.infer<typeof ExperimentListSchema>

const LabelSchema = z.union([z.number().int(), z.string().min(1).max(128)])

export const FeedbackRequestSchema = z
  .strictObject({
    /** The request's x-request-id, or for a completion its `id` (`cmpl-…`, `chatcmpl-…`). */
    request_id: FeedbackRequestIdSchema,
    /** The outcome in [0, 1] (1 = best). */
    reward: z.number().min(0).max(1).optional(),
    /**
     * The true label(s): compared with the prediction the gateway recorded (argmax of the prediction output per
     * row); the reward is the share of rows predicted right. One label for a one-row request, else one per row.
     */
    label: z.union([LabelSchema, z.array(LabelSchema).min(1).max(1024)]).optional(),
  })
  .refine((f) => (f.reward === undefined) !== (f.label === undefined), {
    message: 'send exactly one of reward (a number in [0, 1]) and label',
  })
export type FeedbackRequest = z.output<typeof FeedbackRequestSchema>

export const FeedbackResponseSchema = z.object({
  request_id: z.string(),
  experiment_id: ExperimentIdSchema,
  arm: NameSchema,
  reward: z.number(),
  /** True when this request already had this feedback (a retry): nothing was counted twice. */
  duplicate: z.boolean(),
})
export type FeedbackResponse = z.infer<typeof FeedbackResponseSchema>

const IntervalSchema = z.tuple([z.number(), z.number()])

export const ArmResultsSchema = z.object({
  arm: NameSchema,
  control: z.boolean(),
  status: z.enum(ARM_STATUSES),
  stop_reason: z.string().nullable(),
  weight: z.number(),
  /** Percent of units assigned to the arm now. */
  share: z.number(),
  /** Exposures (pinned requests excluded). */
  n: z.number().int(),
  errors: z.number().int(),
  error_rate: z.number().nullable(),
  latency_ms: z.object({ p50: z.number(), p95: z.number() }).nullable(),
  /** Exposures with feedback. */
  feedback: z.number().int(),
  reward: z
    .object({
      mean: z.number(),
      /** 95% interval for the mean (Wilson for 0/1 rewards, normal otherwise); fixed-sample, not sequential. */
      ci95: IntervalSchema,
    })
    .nullable(),
  /** The comparison with the control (absent for the control itself). */
  versus_control: z
    .object({
      /** Mean reward of this arm minus the control's. */
      difference: z.number(),
      /** Always-valid (1 − α) confidence interval for the difference; null during burn-in. */
      confidence_sequence: IntervalSchema.nullable(),
      /** Always-valid p-value (mSPRT): may be read after every observation without inflating false positives. */
      p_value: z.number(),
      /** The level a decision needs: alpha split over the compared arms. */
      alpha: z.number(),
    })
    .nullable(),
  decision: z.enum(ARM_DECISIONS),
  /** Thompson mode: the Beta posterior of the mean reward and the probability that the arm is best. */
  posterior: z.object({ alpha: z.number(), beta: z.number(), p_best: z.number() }).nullable(),
})
export type ArmResults = z.infer<typeof ArmResultsSchema>

export const ExperimentResultsSchema = z.object({
  experiment: ExperimentSchema,
  generated_at: z.iso.datetime(),
  arms: z.array(ArmResultsSchema),
  /** Exposures, mean latency and mean reward per arm per time bucket. */
  timeseries: z.object({
    bucket_ms: z.number().int().positive(),
    points: z.array(
      z.object({
        t: z.number().int(),
        arm: NameSchema,
        exposures: z.number().int(),
        latency_ms: z.number(),
        rewards: z.number().int(),
        reward_mean: z.number().nullable(),
      }),
    ),
  }),
  /** The always-valid p-value of each compared arm after each (sampled) number of rewards seen in total. */
  p_value_history: z.record(
    NameSchema,
    z.array(z.object({ rewards: z.number().int(), p_value: z.number() })),
  ),
})
export type ExperimentResults = z.infer<typeof ExperimentResultsSchema>
