/**
 * Merge controls: the keys of an inference request's `parameters` that choose how the experts are mixed for that
 * request. The runner parses them at its boundary (and the gateway may, before forwarding). Strict: a misspelt
 * key is an error, never silently ignored.
 *
 * | parameters                          | effect                                                               |
 * | ----------------------------------- | -------------------------------------------------------------------- |
 * | (none)                              | the package's router weighs the experts per row (Twin-Merging)       |
 * | `top_k: 2`                          | keep each row's k largest router weights, renormalised               |
 * | `abstain_below: 0.6`                | rows where the router's largest weight is below 0.6 use the shared model (weights 0) |
 * | `exclude_experts: ["medical"]`      | those experts get weight 0 in the router's mix, renormalised         |
 * | `experts: {"math": 0.7, "code": 0.3}` | this explicit mix for every row, bypassing the router (missing = 0) |
 * | `variant: "shared"`                 | a static arm built into the package (`shared` always exists)         |
 * | `experts` + `merge_method: "ties"` (+ `density`, `majority_sign_method`, `lambda`, …) | a per-request merge |
 * | `fan_out: true`                     | every expert alone (one-hot mix) and the shared model, in one run; outputs labelled `<output>/<expert>` and `<output>/shared` |
 *
 * `merge_method` takes the names and flat global parameters of `MergeSpecSchema` (LoRAX's request style:
 * `merge_method`/`density`/`majority_sign_method` beside the weights); it is executed by materialising the merged
 * weights (cached per canonical recipe), not in the factored graph.
 * @module
 */
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { describeIssues } from '../http.ts'
import {
  MERGE_METHOD_NAMES,
  type MergeSpec,
  MergeSpecSchema,
  MergeWeightSchema,
  snapMergeSpec,
  snapToGrid,
} from './merge.ts'
import { NameSchema } from './twin-package.ts'

/** The global parameters of every merge method, flat in `parameters` (derived so they follow merge.ts). */
export const MERGE_PARAMETER_KEYS: readonly string[] = [
  ...new Set(
    MergeSpecSchema.options.flatMap((o) =>
      Object.keys(o.shape).filter((k) => k !== 'method' && k !== 'experts'),
    ),
  ),
].sort()

const CONTROL_KEYS = [
  'experts',
  'top_k',
  'exclude_experts',
  'abstain_below',
  'variant',
  'merge_method',
  'fan_out',
] as const

const ScalarSchema = z.union([z.number(), z.boolean(), z.string()])

export const MergeControlsSchema = z
  .strictObject({
    /** Explicit mix {expert: weight}; experts not named get 0. */
    experts: z
      .record(NameSchema, MergeWeightSchema)
      .refine((e) => Object.keys(e).length > 0, 'must name at least one expert')
      .optional(),
    top_k: z
      .number({ error: 'must be a number' })
      .int({ error: 'must be a whole number' })
      .min(1, 'must be at least 1')
      .optional(),
    exclude_experts: z
      .array(NameSchema)
      .min(1)
      .refine((a) => new Set(a).size === a.length, 'lists an expert twice')
      .optional(),
    /** The router's confidence (its largest weight, in [0, 1]) below which a row uses the shared model. */
    abstain_below: z
      .number({ error: 'must be a number' })
      .min(0, 'must be between 0 and 1')
      .max(1, 'must be between 0 and 1')
      .optional(),
    variant: NameSchema.optional(),
    merge_method: z
      .enum(MERGE_METHOD_NAMES, {
        error: (i) =>
          `unknown merge_method ${JSON.stringify(i.input)}; one of: ${MERGE_METHOD_NAMES.join(', ')}`,
      })
      .optional(),
    /**
     * Run the input through every expert alone (a one-hot mix each) and through the shared model (all weights 0),
     * in one batched run; each output comes back once per expert, labelled (FAN_OUT_SHARED for the shared model).
     */
    fan_out: z.boolean({ error: 'must be true or false' }).optional(),
    ...Object.fromEntries(MERGE_PARAMETER_KEYS.map((k) => [k, ScalarSchema.optional()])),
  })
  .superRefine((c, ctx) => {
    const given = (k: string) => (c as Record<string, unknown>)[k] !== undefined
    const fail = (path: string, message: string) =>
      ctx.addIssue({ code: 'custom', path: [path], message })
    if (c.variant !== undefined)
      for (const k of ['experts', 'top_k', 'exclude_experts', 'abstain_below', 'merge_method'])
        if (given(k))
          fail(k, `cannot be combined with variant (a variant is a fixed, static merge)`)
    if (c.experts !== undefined)
      for (const k of ['top_k', 'exclude_experts', 'abstain_below'])
        if (given(k))
          fail(
            k,
            'applies to the router’s weights; with an explicit experts mix, leave the expert out or give it 0',
          )
    if (c.fan_out === true)
      for (const k of [...CONTROL_KEYS, ...MERGE_PARAMETER_KEYS])
        if (k !== 'fan_out' && given(k))
          fail(k, 'cannot be combined with fan_out (fan_out runs every expert alone, one-hot)')
    const mergeParams = MERGE_PARAMETER_KEYS.filter(given)
    if (c.merge_method === undefined) {
      for (const k of mergeParams) fail(k, 'is a merge parameter and needs merge_method')
      return
    }
    if (c.merge_method === 'regmean') {
      // The Grams come from running each expert on its routing data, which only the builder does.
      fail(
        'merge_method',
        "'regmean' needs the Gram matrices of each layer's inputs on the routing data, which only twinserve build computes: use it as a recipe's shared merge or a variant, not per request",
      )
      return
    }
    if (c.experts === undefined) {
      fail('merge_method', 'needs experts: the experts to merge and their weights')
      return
    }
    const spec = MergeSpecSchema.safeParse(specInput(c))
    if (!spec.success)
      for (const issue of spec.error.issues) {
        const [head, name, ...rest] = issue.path.map(String)
        if (head === 'experts')
          fail(
            'experts',
            `${name ?? ''}${rest.length ? `.${rest.join('.')}` : ''}: ${issue.message}`,
          )
        else if (issue.code === 'unrecognized_keys')
          for (const k of issue.keys)
            fail(k, `is not a parameter of merge_method '${c.merge_method}'`)
        else fail(head ?? 'merge_method', issue.message)
      }
  })
/** The controls as written in `parameters` (validated). */
export type MergeControls = z.output<typeof MergeControlsSchema>

/** Builds the merge-spec input from flat parameters: method + its globals + per-expert weights. */
function specInput(c: MergeControls): Record<string, unknown> {
  const input: Record<string, unknown> = { method: c.merge_method }
  for (const k of MERGE_PARAMETER_KEYS) {
    const v = (c as Record<string, unknown>)[k]
    if (v !== undefined) input[k] = v
  }
  // model_stock takes no weights (its spec has no `experts`); the experts listed are the ones merged.
  if (c.merge_method !== 'model_stock')
    input.experts = Object.fromEntries(
      Object.entries(c.experts ?? {}).map(([name, weight]) => [name, { weight }]),
    )
  return input
}

/** The label of the shared model's outputs in a fan-out answer (`<output>/shared`). */
export const FAN_OUT_SHARED = 'shared'

/**
 * A fan-out answer's output name for one expert (or FAN_OUT_SHARED): `<output>/<label>`. Expert names cannot
 * hold `/` (NameSchema), so the split at the last `/` is unambiguous.
 */
export function fanOutName(output: string, label: string): string {
  return `${output}/${label}`
}

/** What the runner executes, one of five paths. */
export type MergeSelection =
  | { kind: 'router'; topK?: number; exclude: string[]; abstainBelow?: number }
  | { kind: 'fan_out' }
  | { kind: 'explicit'; experts: Record<string, number> }
  | { kind: 'variant'; variant: string }
  | { kind: 'materialized'; experts: Record<string, number>; spec: MergeSpec }

/** Unknown controls are named with the list of known ones: a misspelt `top_k` should say what it meant. */
function describeControlIssue(i: z.core.$ZodIssue): string | undefined {
  if (i.code !== 'unrecognized_keys') return undefined
  return `parameters: unknown merge control${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `'${k}'`).join(', ')} (known: ${CONTROL_KEYS.join(', ')} and merge_method's parameters ${MERGE_PARAMETER_KEYS.join(', ')})`
}

/**
 * Parses a request's `parameters` into the path to run.
 * @throws AppError INVALID_REQUEST naming each bad key
 * @example parseMergeControls({ experts: { math: 1 }, merge_method: 'ties', density: 0.5 }).kind // 'materialized'
 */
export function parseMergeControls(
  parameters: Record<string, unknown> | undefined,
): MergeSelection {
  const parsed = MergeControlsSchema.safeParse(parameters ?? {})
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      describeIssues(parsed.error, { root: 'parameters', describe: describeControlIssue }),
    )
  const c = parsed.data
  if (c.fan_out === true) return { kind: 'fan_out' }
  if (c.variant !== undefined) return { kind: 'variant', variant: c.variant }
  if (c.experts !== undefined && c.merge_method !== undefined)
    // Snapped to the parameter grid: the merged (and cached) recipe, so near-identical recipes share a merge.
    return {
      kind: 'materialized',
      experts: Object.fromEntries(
        Object.entries(c.experts).map(([name, w]) => [name, snapToGrid('weight', w)]),
      ),
      spec: snapMergeSpec(MergeSpecSchema.parse(specInput(c))),
    }
  if (c.experts !== undefined) return { kind: 'explicit', experts: c.experts }
  return {
    kind: 'router',
    ...(c.top_k !== undefined ? { topK: c.top_k } : {}),
    exclude: c.exclude_experts ?? [],
    ...(c.abstain_below !== undefined ? { abstainBelow: c.abstain_below } : {}),
  }
}

/**
 * What a run adds to the V2 response's `parameters` beside `variant`, `merge_path` and `provider` (the merge
 * extension): `abstained_rows`, only when an abstain threshold applied (`abstain_below` or the package's
 * default), how many of the request's rows the router was too unsure for; those rows applied no expert (their
 * `expert_weights` are 0: the shared model).
 */
export const RunParametersSchema = z.strictObject({
  abstained_rows: z.number().int().nonnegative().optional(),
})
export type RunParameters = z.output<typeof RunParametersSchema>
