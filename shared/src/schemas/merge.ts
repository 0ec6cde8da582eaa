/**
 * Merge specifications: which merge method to run and with what parameters. One strict object per
 * method, discriminated by `method`, with mergekit's names and defaults so a recipe moved from mergekit gives
 * the same numbers. Global parameters sit on the spec; per-expert ones (`weight`, `density`, and for some
 * methods `gamma` / `epsilon`) in `experts`, keyed by expert name. An expert missing from `experts` gets
 * weight 1 and the global values.
 *
 * Divergences from mergekit, on purpose: `weight` defaults to 1 (mergekit requires it); `model_stock` takes
 * no weights (mergekit ignores them); `consensus` (TALL-mask consensus) is not in mergekit. Every method is
 * data-free except `regmean` (not in mergekit either), which needs the Gram matrices of each linear layer's inputs
 * on the routing data: only `twinserve build` has them, so it is a recipe method (shared model, variants) and
 * never a per-request `merge_method`.
 * @see https://github.com/arcee-ai/mergekit/blob/main/mergekit/merge_methods/registry.py
 * @module
 */
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { describeIssues } from '../http.ts'
import { NameSchema } from './twin-package.ts'

export const MergeMethodNameSchema = z.enum([
  'linear',
  'task_arithmetic',
  'ties',
  'dare_linear',
  'dare_ties',
  'breadcrumbs',
  'breadcrumbs_ties',
  'della',
  'della_linear',
  'model_stock',
  'consensus',
  'regmean',
])
/** The closed list of strategy names (mergekit / LoRAX spelling). */
export const MERGE_METHOD_NAMES = MergeMethodNameSchema.options
export type MergeMethodName = z.infer<typeof MergeMethodNameSchema>

// zod 4's z.number() already refuses NaN and ±Infinity, so every number below is finite. Finite is not enough:
// weights of ±1e30 overflow float32 in the merged tensors (issue #16), so magnitudes are bounded too.

/** The largest |weight| of an expert in a merge or an explicit mix; real mixes stay within a few units. */
export const MAX_MERGE_WEIGHT = 100
/** The largest |lambda| (task-vector scale) and TALL-mask threshold. */
export const MAX_MERGE_LAMBDA = 100
/**
 * Real-valued merge parameters are rounded to multiples of this before a recipe is keyed and merged, so
 * recipes that differ only in the ninth decimal share one cached merge (issue #16: varying `density` by 1e-9 per
 * request kept the merge cache cold for everyone).
 */
export const MERGE_PARAMETER_GRID = 0.001

/** An expert's weight in a merge or an explicit mix. */
export const MergeWeightSchema = z
  .number()
  .min(-MAX_MERGE_WEIGHT, `must be at least -${MAX_MERGE_WEIGHT}`)
  .max(MAX_MERGE_WEIGHT, `must be at most ${MAX_MERGE_WEIGHT}`)
const WeightSchema = MergeWeightSchema
const LambdaSchema = z
  .number()
  .min(-MAX_MERGE_LAMBDA, `must be at least -${MAX_MERGE_LAMBDA}`)
  .max(MAX_MERGE_LAMBDA, `must be at most ${MAX_MERGE_LAMBDA}`)
/** Fraction of a task vector's entries kept by sparsification; 1 keeps everything. */
const DensitySchema = z.number().gt(0).lte(1)
/** Makes the random methods (DARE, DELLA) reproducible: mixed with the tensor and expert names. */
const SeedSchema = z.number().int().min(0).max(0xffff_ffff)
/** Breadcrumbs: fraction of the largest-magnitude entries removed as outliers. */
const GammaSchema = z.number().gte(0).lt(1)
/** DELLA: keep probabilities span [density − epsilon, density + epsilon]. */
const EpsilonSchema = z.number().gte(0).lt(0.5)
/** TIES sign election: `total` = sign of the summed values (mergekit `sum`), `frequency` = majority of signs (`count`). */
export const MajoritySignMethodSchema = z.enum(['total', 'frequency'])
export type MajoritySignMethod = z.infer<typeof MajoritySignMethodSchema>

const ExpertWeightSchema = z.strictObject({ weight: WeightSchema.optional() })
const ExpertDensitySchema = z.strictObject({
  weight: WeightSchema.optional(),
  density: DensitySchema.optional(),
})
const ExpertBreadcrumbsSchema = z.strictObject({
  weight: WeightSchema.optional(),
  density: DensitySchema.optional(),
  gamma: GammaSchema.optional(),
})
const ExpertDellaSchema = z.strictObject({
  weight: WeightSchema.optional(),
  density: DensitySchema.optional(),
  epsilon: EpsilonSchema.optional(),
})

function expertsOf<T extends z.ZodType>(entry: T) {
  return z.record(NameSchema, entry).default({})
}

/** Task-vector methods: θ = θ_base + lambda·Σ_t w_t·τ_t, divided by Σ w_t when `normalize`. */
const scaled = (normalize: boolean) => ({
  lambda: LambdaSchema.default(1),
  normalize: z.boolean().default(normalize),
})
/** …whose task vectors are sparsified to `density` first, the kept entries rescaled by 1/density if `rescale`. */
const sparsified = (normalize: boolean, rescale: boolean) => ({
  ...scaled(normalize),
  rescale: z.boolean().default(rescale),
  density: DensitySchema.default(1),
})
/** TIES-style sign election before the sum. */
const signElected = () => ({ majority_sign_method: MajoritySignMethodSchema.default('total') })
const seeded = () => ({ seed: SeedSchema.default(0) })

export const LinearSpecSchema = z.strictObject({
  method: z.literal('linear'),
  /** Divide by Σ weight (mergekit default true): a weighted average of the expert models. */
  normalize: z.boolean().default(true),
  experts: expertsOf(ExpertWeightSchema),
})

export const TaskArithmeticSpecSchema = z.strictObject({
  method: z.literal('task_arithmetic'),
  ...scaled(false),
  experts: expertsOf(ExpertWeightSchema),
})

export const TiesSpecSchema = z.strictObject({
  method: z.literal('ties'),
  ...sparsified(true, false),
  ...signElected(),
  experts: expertsOf(ExpertDensitySchema),
})

export const DareLinearSpecSchema = z.strictObject({
  method: z.literal('dare_linear'),
  ...sparsified(false, true),
  ...seeded(),
  experts: expertsOf(ExpertDensitySchema),
})

export const DareTiesSpecSchema = z.strictObject({
  method: z.literal('dare_ties'),
  ...sparsified(false, true),
  ...signElected(),
  ...seeded(),
  experts: expertsOf(ExpertDensitySchema),
})

export const BreadcrumbsSpecSchema = z.strictObject({
  method: z.literal('breadcrumbs'),
  ...sparsified(false, false),
  gamma: GammaSchema.default(0.01),
  experts: expertsOf(ExpertBreadcrumbsSchema),
})

export const BreadcrumbsTiesSpecSchema = z.strictObject({
  method: z.literal('breadcrumbs_ties'),
  ...sparsified(false, false),
  gamma: GammaSchema.default(0.01),
  ...signElected(),
  experts: expertsOf(ExpertBreadcrumbsSchema),
})

/** mergekit's check: below density 1, each expert's keep probabilities must lie inside (0, 1). */
function checkDellaRange(
  spec: {
    density: number
    epsilon: number
    experts: Record<string, { density?: number; epsilon?: number }>
  },
  ctx: z.RefinementCtx,
): void {
  const check = (density: number, epsilon: number, path: (string | number)[]) => {
    if (density < 1 && (density - epsilon <= 0 || density + epsilon >= 1))
      ctx.addIssue({
        code: 'custom',
        path,
        message: `density ± epsilon must lie in (0, 1): density ${density}, epsilon ${epsilon}`,
      })
  }
  check(spec.density, spec.epsilon, ['epsilon'])
  for (const [name, e] of Object.entries(spec.experts))
    if (e.density !== undefined || e.epsilon !== undefined)
      check(e.density ?? spec.density, e.epsilon ?? spec.epsilon, ['experts', name])
}

/** DELLA's magnitude-ranked keep probabilities span density ± epsilon. */
const dellaPruned = (normalize: boolean) => ({
  ...sparsified(normalize, true),
  epsilon: EpsilonSchema.default(0.15),
})

export const DellaSpecSchema = z
  .strictObject({ method: z.literal('della'), ...dellaPruned(true), ...signElected(), ...seeded() })
  .extend({ experts: expertsOf(ExpertDellaSchema) })
  .superRefine(checkDellaRange)

export const DellaLinearSpecSchema = z
  .strictObject({ method: z.literal('della_linear'), ...dellaPruned(false), ...seeded() })
  .extend({ experts: expertsOf(ExpertDellaSchema) })
  .superRefine(checkDellaRange)

export const ModelStockSpecSchema = z.strictObject({
  method: z.literal('model_stock'),
  /** One interpolation ratio per row (first dimension) instead of per tensor. */
  filter_wise: z.boolean().default(false),
})

export const ConsensusSpecSchema = z.strictObject({
  method: z.literal('consensus'),
  /** lambda scales the kept multi-task vector, as in task arithmetic. */
  ...scaled(false),
  /** TALL-mask threshold λ_t: expert t claims an entry when |τ_t| > λ_t·|τ_MTL − τ_t|. Paper default 0.6. */
  tall_mask_lambda: z.number().gte(0).lte(MAX_MERGE_LAMBDA).default(0.6),
  /** Keep an entry when at least k experts claim it; k=2 drops "selfish" and "catastrophic" weights. */
  k: z.number().int().min(1).max(1024).default(2),
  experts: expertsOf(ExpertWeightSchema),
})

/** RegMean: an expert's weight scales its Gram matrices, so it must be positive (a negative one breaks the solve). */
const ExpertRegMeanSchema = z.strictObject({
  weight: z.number().gt(0, 'must be above 0').max(MAX_MERGE_WEIGHT).optional(),
})

/**
 * RegMean (data-informed, build time only): per linear weight, W* = (Σ_i w_i·G̃_i)⁻¹ Σ_i w_i·G̃_i·W_i from the
 * Gram matrices G_i = X_iᵀX_i of the layer's inputs on expert i's routing data, G̃ = alpha·G + (1−alpha)·diag(G).
 * Tensors that are not the weight of a linear map (biases, norms, embedding tables) get the weighted average.
 */
export const RegMeanSpecSchema = z.strictObject({
  method: z.literal('regmean'),
  /** Off-diagonal scale of the Grams; 1 is plain RegMean (least squares), 0 the diagonal-only (per-input) weighting. */
  alpha: z.number().gte(0).lte(1).default(0.9),
  experts: expertsOf(ExpertRegMeanSchema),
})

export const MergeSpecSchema = z.discriminatedUnion('method', [
  LinearSpecSchema,
  TaskArithmeticSpecSchema,
  TiesSpecSchema,
  DareLinearSpecSchema,
  DareTiesSpecSchema,
  BreadcrumbsSpecSchema,
  BreadcrumbsTiesSpecSchema,
  DellaSpecSchema,
  DellaLinearSpecSchema,
  ModelStockSpecSchema,
  ConsensusSpecSchema,
  RegMeanSpecSchema,
])
/** A parsed spec: every default filled in. */
export type MergeSpec = z.output<typeof MergeSpecSchema>
/** What a user writes: defaults optional. */
export type MergeSpecInput = z.input<typeof MergeSpecSchema>
export type MergeSpecOf<K extends MergeMethodName> = Extract<MergeSpec, { method: K }>

/** Compile-time check that the union covers exactly the closed list of names. */
type _AssertNamesCovered = [MergeMethodName] extends [MergeSpec['method']]
  ? [MergeSpec['method']] extends [MergeMethodName]
    ? true
    : never
  : never
const _namesCovered: _AssertNamesCovered = true
void _namesCovered

/**
 * Parses a merge spec, throwing `AppError('INVALID_REQUEST')` that names each bad field.
 * @example parseMergeSpec({ method: 'ties', density: 0.2 }) // → { method: 'ties', lambda: 1, normalize: true, … }
 */
export function parseMergeSpec(input: unknown): MergeSpec {
  const parsed = MergeSpecSchema.safeParse(input)
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', `invalid merge spec: ${describeIssues(parsed.error)}`)
  return parsed.data
}

/** The spec's real-valued parameters (top level and per expert) that snap to MERGE_PARAMETER_GRID. */
const GRID_PARAMETERS = new Set([
  'weight',
  'density',
  'lambda',
  'gamma',
  'epsilon',
  'tall_mask_lambda',
  'alpha',
])

/** `x` rounded to the grid; a density never rounds to 0 (it must stay > 0). */
export function snapToGrid(key: string, x: number): number {
  const snapped = Math.round(x / MERGE_PARAMETER_GRID) / Math.round(1 / MERGE_PARAMETER_GRID)
  return key === 'density' && snapped <= 0 ? MERGE_PARAMETER_GRID : snapped
}

function snapObject(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(o).map(([k, v]) => [
      k,
      typeof v === 'number' && GRID_PARAMETERS.has(k) ? snapToGrid(k, v) : v,
    ]),
  )
}

/**
 * The spec with its real-valued parameters rounded to MERGE_PARAMETER_GRID: the recipe that is merged, keyed and
 * cached. Checked again after rounding (DELLA's density ± epsilon may leave (0, 1)).
 * @throws AppError INVALID_REQUEST when the rounded spec is not valid
 */
export function snapMergeSpec(spec: MergeSpec): MergeSpec {
  const top = snapObject(spec as unknown as Record<string, unknown>)
  if ('experts' in spec)
    top.experts = Object.fromEntries(
      Object.entries(spec.experts).map(([name, e]) => [name, snapObject(e)]),
    )
  const parsed = MergeSpecSchema.safeParse(top)
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      `merge parameters rounded to multiples of ${MERGE_PARAMETER_GRID}: ${describeIssues(parsed.error)}`,
    )
  return parsed.data
}

/**
 * The default compression target (issue #18): the cheapest Pareto point of the Fashion zoo's quality–cost
 * frontier with ≥ 97% of the experts' accuracy on validation (bench/RESULTS.md, "Quality–cost frontier": budget
 * 0.055 with int8 factors and the trained router, 97.0% validation / 97.2% test normalised in 24.8% of the
 * experts' bytes; the same budget with float16 factors keeps only 88.8%, hence int8 goes with it).
 */
export const DEFAULT_EXCLUSIVE_BUDGET = 0.055
export const DEFAULT_EXCLUSIVE_DTYPE = 'int8'

const oneOfRankOrEnergy = {
  message: 'give exactly one of rank or energy',
}
const oneOfRankEnergyOrBudget = {
  message: `give at most one of rank, energy, budget or shared_basis (none: the default, budget ${DEFAULT_EXCLUSIVE_BUDGET})`,
}

/** A per-tensor compression target: the first entry whose `match` pattern names a tensor wins. */
export const ExclusiveTensorRuleSchema = z
  .strictObject({
    /** Tensor name pattern: a `/regex/` or a glob, as in `include`. */
    match: z.string().min(1),
    rank: z.number().int().min(1).optional(),
    energy: z.number().gt(0).lte(1).optional(),
  })
  .refine((s) => (s.rank === undefined) !== (s.energy === undefined), oneOfRankOrEnergy)
export type ExclusiveTensorRule = z.output<typeof ExclusiveTensorRuleSchema>

/**
 * Exclusive-knowledge compression (Twin-Merging): each 2-D tensor's v_t = θ_t − θ_shared is truncated to a
 * fixed `rank`, or to the smallest rank that keeps `energy` of ‖v_t‖²_F, or ranks are allocated under one byte
 * `budget`; 1-D tensors stay exact. `tensors` overrides the target per tensor (e.g. more rank where a tensor's
 * bytes per rank are low). `include` / `exclude` pick tensors by name: a `/regex/` or a glob (`*` any run of
 * characters, `?` one).
 *
 * A spec that states none of `rank`, `energy`, `budget` gets the measured default point, `budget: 0.055` with
 * `dtype: int8` unless it states a dtype. A spec that states a target keeps `float32` as its dtype default, so
 * every recipe written before the default existed still means what it meant.
 */
export const ExclusiveSpecSchema = z
  .strictObject({
    rank: z.number().int().min(1).optional(),
    energy: z.number().gt(0).lte(1).optional(),
    /**
     * One byte budget for all of the exclusive knowledge, as a fraction of the experts' bytes (their files): the
     * builder keeps the exact vector deltas, then spends the rest rank by rank where a byte keeps the most
     * singular-value energy, per matrix and per expert (ranks then differ across tensors and experts). Counts
     * the factors as stored (`dtype`), σ and each rank's expert index. Cannot be combined with `tensors`. The
     * dense twin graph serves the ragged ranks as they are; with `topk_gather` each matrix is padded to its
     * largest per-expert rank (zero σ), and the padding's bytes come on top of the budget. A delta build
     * (`--add-expert`, `--replace-expert`) keeps the other experts' factors and gives the new experts this
     * fraction of their own files' bytes.
     */
    budget: z
      .number()
      .gt(0, "must be a fraction of the experts' bytes in (0, 1], e.g. 0.25")
      .lte(1, "must be a fraction of the experts' bytes in (0, 1], e.g. 0.25")
      .optional(),
    /** Per-tensor targets, first match wins; tensors no rule matches get `rank` / `energy`. */
    tensors: z.array(ExclusiveTensorRuleSchema).max(256).optional(),
    include: z.array(z.string().min(1)).optional(),
    exclude: z.array(z.string().min(1)).optional(),
    /**
     * Storage type of the low-rank factors in the package: `float16` halves their bytes (computed in float32
     * after a Cast that onnxruntime folds at load); `int8` quarters them (symmetric, one scale per rank component
     * of U and of Vᵀ, folded into σ: the same Cast, nothing more per run); σ and exact vector deltas stay float32.
     * Default: `float32` when the spec states a target, `int8` with the default budget.
     */
    dtype: z.enum(['float32', 'float16', 'int8']).optional(),
    /**
     * Serve with at most this many experts per row, gathering their factors per row (the twin graph's top-k
     * gather formulation): the FLOPs of rank k·r instead of T·r. Rows apply their k largest |weights| (router
     * rows: `top_k` is capped at k); must be below the number of experts. Default: dense, every expert applied.
     */
    topk_gather: z.number().int().min(1).optional(),
    /**
     * One low-rank basis per matrix shared by every expert, plus a small core per expert (issue #18): for a
     * weight W [rows, cols], an input-side basis A [rows, rank] from the SVD of the experts' deltas side by side
     * [ΔW_1 … ΔW_T], an output-side basis B [rank, cols] from the SVD of the deltas stacked [ΔW_1; …; ΔW_T], and
     * cores C_t = Aᵀ·ΔW_t·Bᵀ [rank, rank], so ΔW_t ≈ A·C_t·B (the best approximation within the two shared
     * subspaces). A row computes x·A once, mixes the cores by its weights, then ·B: the bytes and FLOPs of
     * rank `rank` (plus T·rank² for the cores) whatever the number of experts, where per-expert factors cost
     * T·rank. Pays when the experts' deltas share directions; experts that change unrelated directions need
     * rank ≈ T·r for what per-expert rank r keeps. Each side's rank is capped at what its stacked matrix can
     * have (min(rows, T·cols) and min(cols, T·rows)). Replaces rank / energy / budget; the basis and cores are
     * stored as `dtype` (int8: per-component scales folded into the cores, which stay float16).
     */
    shared_basis: z
      .strictObject({
        rank: z.number().int().min(1).optional(),
        /**
         * Instead of one rank for every matrix: a byte budget as a fraction of the experts' bytes, like
         * `exclusive.budget`, spent on each matrix's basis rank where a byte keeps the most of the experts' deltas.
         */
        budget: z
          .number()
          .gt(0, "must be a fraction of the experts' bytes in (0, 1], e.g. 0.1")
          .lte(1, "must be a fraction of the experts' bytes in (0, 1], e.g. 0.1")
          .optional(),
      })
      .refine((b) => (b.rank === undefined) !== (b.budget === undefined), {
        message: 'give exactly one of rank or budget',
      })
      .optional(),
  })
  .refine(
    (s) => [s.rank, s.energy, s.budget, s.shared_basis].filter((x) => x !== undefined).length <= 1,
    oneOfRankEnergyOrBudget,
  )
  .refine((s) => s.shared_basis === undefined || s.tensors === undefined, {
    message:
      'shared_basis gives every matrix one basis rank; per-tensor rules (tensors) cannot be combined with it',
    path: ['tensors'],
  })
  .refine((s) => s.shared_basis === undefined || s.topk_gather === undefined, {
    message:
      'shared_basis already computes the basis once per row whatever the number of experts; it cannot be combined with topk_gather',
    path: ['topk_gather'],
  })
  .refine((s) => s.budget === undefined || s.tensors === undefined, {
    message:
      "budget allocates every matrix's rank itself; per-tensor rules (tensors) cannot be combined with it",
    path: ['tensors'],
  })
  // Rules need a target for the tensors they do not match; the default budget cannot be one (see above).
  .refine(
    (s) => s.tensors === undefined || [s.rank, s.energy, s.budget].some((x) => x !== undefined),
    {
      message: 'per-tensor rules (tensors) need rank or energy for the tensors no rule matches',
      path: ['tensors'],
    },
  )
  .transform((s) => {
    const stated =
      s.rank !== undefined ||
      s.energy !== undefined ||
      s.budget !== undefined ||
      s.shared_basis !== undefined
    const { rank, energy, tensors, include, exclude, topk_gather, shared_basis } = s
    // Rebuilt in the schema's key order: a manifest stores the parsed spec, and a delta build compares a
    // re-parsed recipe's spec with it as JSON.
    return {
      ...(rank !== undefined ? { rank } : {}),
      ...(energy !== undefined ? { energy } : {}),
      ...(stated
        ? s.budget !== undefined
          ? { budget: s.budget }
          : {}
        : { budget: DEFAULT_EXCLUSIVE_BUDGET }),
      ...(tensors !== undefined ? { tensors } : {}),
      ...(include !== undefined ? { include } : {}),
      ...(exclude !== undefined ? { exclude } : {}),
      dtype: s.dtype ?? (stated ? 'float32' : DEFAULT_EXCLUSIVE_DTYPE),
      ...(topk_gather !== undefined ? { topk_gather } : {}),
      ...(shared_basis !== undefined ? { shared_basis } : {}),
    }
  })
export type ExclusiveSpec = z.output<typeof ExclusiveSpecSchema>
