/**
 * The recipe `twinserve build <recipe.yaml> --out <dir>` reads (YAML or JSON): which base and expert ONNX files,
 * how to build the shared model (any merge strategy; Twin-Merging's default is task arithmetic with λ = 0.3),
 * how to compress each expert's exclusive knowledge, how to train the router, and which static variants to add
 * as A/B arms. Paths are relative to the recipe file. Multi-word keys are snake_case, like the merge specs
 * (mergekit's YAML spelling).
 * @example
 * name: fashion-twin
 * base: zoo/base.onnx
 * experts: [{ name: original, model: zoo/experts/original.onnx }, …]
 * shared: { method: task_arithmetic, lambda: 0.3 }
 * exclusive: { budget: 0.055, dtype: int8 }   # the default when left out
 * router: { data: routing.jsonl, hidden: [64], epochs: 30, seed: 1 }
 * tokenizer: { file: models/tokenizer.json, max_length: 64, pad_id: 0 }   # text models only
 * variants: [{ name: ties, shared: { method: ties, density: 0.2, lambda: 1 } }]
 * @see https://arxiv.org/abs/2406.15479 (Twin-Merging)
 * @module
 */
import { z } from 'zod'
import { AppError } from '../errors.ts'
import { describeIssues } from '../http.ts'
import { ExclusiveSpecSchema, type MergeSpec, MergeSpecSchema } from './merge.ts'
import { NameSchema, RouterKindSchema } from './twin-package.ts'

const PathSchema = z.string().min(1)

export const RecipeExpertSchema = z.strictObject({
  name: NameSchema,
  /** Path of the fine-tuned expert's ONNX file (same graph as the base). */
  model: PathSchema,
  /**
   * Label names of the expert's task, in logit order: the task reads the first `labels.length` values of the
   * model's classification output. Copied into the package so the runner can name a row's routed labels.
   */
  labels: z.array(z.string().min(1).max(256)).min(1).max(4096).optional(),
})

/**
 * A Hugging Face `tokenizer.json` (+ optional `tokenizer_config.json`) for models that read token ids: the
 * package carries both, the runner then also accepts raw UTF-8 text as a V2 `BYTES` input, and routing data may
 * give `{"text": "…"}` in place of the token tensors. Every text becomes the tokenizer's ids (special tokens
 * included), cut to `max_length` when `truncation` (keeping the post-processor's closing special tokens, e.g.
 * `[CLS] … [SEP]`) and right-padded with `pad_id` to `max_length`; the attention mask is 1 on the real tokens.
 */
export const TokenizerRecipeSchema = z.strictObject({
  /** Path of `tokenizer.json`. */
  file: PathSchema,
  /** Path of `tokenizer_config.json` (special-token settings); optional. */
  config: PathSchema.optional(),
  max_length: z.number().int().min(3).max(65536),
  pad_id: z.number().int().nonnegative(),
  /** false: a text longer than `max_length` tokens is refused (400 at serve time, an error at build time). */
  truncation: z.boolean().default(true),
  /** The model inputs the ids and the mask feed (int64 [batch, seq]). */
  ids_input: z.string().min(1).default('input_ids'),
  mask_input: z.string().min(1).default('attention_mask'),
})

export const RouterRecipeSchema = z.strictObject({
  /**
   * `mlp`: Twin-Merging's trained router; `prototype`: per-expert mean features, cosine softmax (no training);
   * `data-free` (SMILE): no routing data at all, the weights come from the stored factors: how much of the
   * feature lies in each expert's input subspace of the matrix that reads it, softmax with `temperature`
   * (`data` then only verifies the package and reports the router's held-out accuracy).
   */
  kind: RouterKindSchema.default('mlp'),
  /**
   * Tensor of the shared model the router reads (mean-pooled over middle axes when [batch, …, d]). Default: the
   * input of the last MatMul/Gemm, i.e. the shared model's last hidden features. An earlier tensor routes for less.
   */
  feature: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(4)]).optional(),
  /**
   * How a [batch, seq, d] feature becomes [batch, d] (mlp and prototype routers). `mean`: the mean over every axis but
   * the batch's and the last, padding positions included. `masked` (text models: needs `tokenizer`): the mean over
   * the positions whose attention mask is 1 only, so that a 3-token name is not averaged with 61 padding rows; in
   * the graph: multiply by the mask, ReduceSum, divide by the mask's sum. A list of features is pooled alike.
   */
  pooling: z.enum(['mean', 'masked']).default('mean'),
  /**
   * Text models (needs `tokenizer`, mlp router): the input ids' normalised bag of tokens (count of each vocabulary
   * id over the real tokens / their number) as extra router features, beside `feature`. In the graph it never
   * materialises: the first layer's rows for the bag are gathered per token and mask-averaged (exact, as cheap
   * as an embedding lookup).
   */
  bag_of_tokens: z.boolean().default(false),
  /**
   * For `pooling: masked` and `bag_of_tokens` on a model with no `tokenizer` block (a decoder with KV-cache
   * inputs, which takes token ids rather than text): the graph inputs holding the ids and the attention mask, and
   * the vocabulary size the bag counts over. With a tokenizer block these come from it.
   */
  token_inputs: z
    .strictObject({
      ids_input: z.string().min(1).default('input_ids'),
      mask_input: z.string().min(1).default('attention_mask'),
      vocab: z
        .number()
        .int()
        .min(1)
        .max(1 << 20),
    })
    .optional(),
  /**
   * Storage type of the mlp router's weight matrices in the twin graph (issue #18): `float16` halves them (the bag
   * of tokens' first layer is vocabulary × hidden: 5,000 × 256 float32 is 5 MB on the text zoo), each a FLOAT16
   * initializer behind a Cast onnxruntime folds at load; biases and the standardisation stay float32. The build's
   * verification still requires the embedded router to agree with the trained one on 99% of the held-out
   * examples. Unset: float32.
   */
  dtype: z.enum(['float32', 'float16']).optional(),
  /**
   * How the bag of tokens weighs each id (with `bag_of_tokens`). `mean`: count / number of real tokens, then
   * standardised with the other features. `tfidf`: sublinear count (1 + ln count) × the id's inverse document
   * frequency on the router's training texts, each text's bag scaled to unit L2 norm, not standardised (a rare id
   * is not blown up by its tiny standard deviation). In the graph, each position's weight comes from how often its
   * id occurs in the text (an Equal of the ids with themselves, summed), so the bag still never materialises.
   */
  bag_weighting: z.enum(['mean', 'tfidf']).default('mean'),
  /**
   * With `bag_of_tokens`: also count pairs of adjacent real tokens, hashed into this many buckets
   * (pair id = (id_i · vocab + id_{i+1}) mod bag_bigrams, in int64 in the graph); 0 = unigrams only. Under `mean`
   * weighting the pairs are their own mean (over the valid pairs); under `tfidf` they join the ids in one vector.
   */
  bag_bigrams: z.number().int().min(0).max(1_048_576).default(0),
  /**
   * With `bag_bigrams`: each bucket holds ONE pair, the one most often seen in it in the router's training texts
   * (ties: the smaller pair id), and a pair counts only in its own bucket; every other pair hashed there is left
   * out. Unchecked, the ~150,000 distinct pairs of the text zoo's routing data share 4,096 buckets ~37 to one and
   * the shared weights learn nothing (bench/quality/text-bigram-probe.ts). In the graph: the bucket's owner
   * ⌊pair / H⌋ is gathered from an int16 (int32 where needed) table and compared with the pair's own. Unset:
   * unchecked.
   */
  bag_bigrams_checked: z.boolean().optional(),
  /** Routing data, JSON lines `{"expert": "<name>", "inputs": {"<input>": [flat values]}}`. */
  data: PathSchema,
  /** Hidden layer widths of the MLP router; [] is a linear (softmax regression) router. */
  hidden: z
    .union([z.number().int().min(1), z.array(z.number().int().min(1)).max(4)])
    .default([64])
    .transform((h) => (typeof h === 'number' ? [h] : h)),
  epochs: z.number().int().min(1).max(1000).default(30),
  lr: z.number().gt(0).lte(1).default(1e-3),
  batch_size: z.number().int().min(1).max(65536).default(64),
  seed: z.number().int().min(0).max(0xffff_ffff).default(0),
  /** Epochs without validation improvement before stopping (the validation split, never the held-out one). */
  patience: z.number().int().min(1).default(5),
  /**
   * The MLP router's logits are multiplied by this before its softmax (1: as trained). Above 1 the served mix
   * leans further toward the router's top expert without becoming top-1: a mix of two experts' weights can answer
   * worse than either, while a hard pick has no fallback when the router is wrong. Pick it on validation.
   */
  sharpness: z.number().gt(0).lte(100).default(1),
  /**
   * Train this many MLP routers, seeds `seed` … `seed + ensemble − 1`, and serve the mean of their logits (before
   * `sharpness`): seeds disagree on the texts they find hard, and the mean lowers that variance. Linear routers
   * (`hidden: []`) average into one linear router (no extra cost in the graph); with hidden layers the members
   * sit side by side (their widths add up). 1 = one router.
   */
  ensemble: z.number().int().min(1).max(8).default(1),
  /** AdamW's decoupled weight decay on the MLP router's weights (not its biases); 0 = none. */
  weight_decay: z.number().min(0).max(1).default(0),
  /** Fraction of each expert's examples held out to REPORT accuracy; never used for training or selection. */
  heldout_fraction: z.number().gt(0).lt(0.9).default(0.2),
  /** Fraction of each expert's examples used for early stopping / restore-best. */
  validation_fraction: z.number().gt(0).lt(0.9).default(0.1),
  /** Cap on examples per expert read from `data` (the first ones in file order). */
  max_per_expert: z.number().int().min(3).optional(),
  /**
   * Softmax temperature of the MLP router's logits (absent: 1), folded into its last layer at build time: above
   * 1 the mix is softer where the router is unsure. A cross-entropy-trained router is overconfident on what it
   * confuses, and a soft mix of the likely experts can score better than a confident wrong one (measured per
   * package: bench/quality/lm-routing-probe.ts for the LM twin).
   */
  mlp_temperature: z.number().gt(0).lte(100).optional(),
  /** Softmax temperature of the prototype router's cosine similarities and of the data-free router's scores. */
  temperature: z.number().gt(0).lte(10).default(0.1),
  /**
   * The package's default abstain threshold: router rows less sure than this use the shared model, unless a
   * request sets its own `abstain_below` (see merge-controls.ts). Default: never abstain.
   */
  abstain_below: z.number().min(0).max(1).optional(),
  /**
   * Decoders with a KV cache: the runner routes a sequence by each expert's likelihood of its prompt instead of
   * the embedded router (the experts as a generative classifier): T one-hot prefills of the prompt in one batched
   * pass, weights softmax(−NLL_e / temperature). Measured on the LM twin (bench/RESULTS.md "LM router probe
   * (2026-12-05)"): 96.9 % normalised on test against the MLP router's 93.6, at τ 2. A one-token prompt has no
   * likelihood and uses the router; request controls (exclude_experts, top_k, abstain_below) apply as to the router.
   */
  prompt_likelihood: z
    .strictObject({
      temperature: z.number().gt(0).lte(100).default(2),
      /**
       * Levers on that posterior, each off by default (bench/quality/lm-likelihood-probe.ts measures them):
       * score by the mean NLL per prompt token (τ then in nats per token) rather than the sum,
       */
      per_token: z.boolean().optional(),
      /** add a log prior per expert (recipe order) to the logits −NLL_e / τ, */
      log_prior: z.array(z.number().min(-50).max(50)).min(1).optional(),
      /** multiply by the graph router's weights on the prompt to this power (one more row in the pass), */
      router_weight: z.number().min(0).max(10).optional(),
      /** and route to one expert alone when its posterior reaches this (top-1 when confident). */
      hard_above: z.number().gt(0).max(1).optional(),
      /**
       * A cascade, for speed: prefill with the embedded router first and keep its mix when its largest weight
       * reaches this, scoring (and prefilling again) only the prompts it is less sure of. Measured on the LM twin
       * (bench/RESULTS.md "LM routing cascade"): 0.95 skips the scoring of 36.6 % of validation prompts within
       * the bootstrap's noise of τ 2 alone, but on a mixed load the added router prefills cost what the skipped
       * scoring saves (no speed gain on the 2-core CPU), so zoo/lm leaves it off.
       */
      router_above: z.number().gt(0).max(1).optional(),
      /**
       * A free prompt classifier, for speed: multinomial logistic regression over the bag of the prompt's ids (and
       * hashed id bigrams), trained at build time on the routing data (deterministic: a rebuild gives the same
       * weights) and evaluated in JavaScript. A prompt it gives probability ≥ `skip_above` for one expert is routed
       * to that expert alone, without the scoring pass (one prefill). Measured on the LM twin (bench/RESULTS.md "LM
       * bag-of-ids prompt classifier"): 0.9 skips 47.9 % of validation prompts, 0.95 38.4 %, both within the
       * bootstrap's noise of τ 2 alone.
       */
      bag: z
        .strictObject({
          skip_above: z.number().gt(0).max(1),
          /** Hashed id-bigram buckets (0: unigrams only). */
          bigrams: z
            .number()
            .int()
            .min(0)
            .max(1 << 20)
            .default(4096),
          /** L2 penalty on the weights. */
          l2: z.number().min(0).default(3e-5),
          /** Full-batch Adam steps. */
          steps: z.number().int().min(1).max(100_000).default(500),
        })
        .optional(),
    })
    .optional(),
})

export const VariantRecipeSchema = z.strictObject({
  name: NameSchema,
  description: z.string().optional(),
  /** The variant's shared merge. */
  shared: MergeSpecSchema,
  /**
   * false: the static merge alone (a plain graph). true: that merge plus the experts' exclusive knowledge
   * relative to it, weighted by the recipe's router (retrained on this variant's features), still a plain graph.
   */
  exclusive: z.boolean().default(false),
})

export const VerifyRecipeSchema = z.strictObject({
  /**
   * Check inputs per expert taken from the routing data (held-out part first). Each expert's one-hot rows are
   * checked on the inputs of its block of 8 experts (build/pipeline/verify.ts), so verification is linear in T.
   */
  examples_per_expert: z.number().int().min(1).max(256).default(8),
})

/** The name of the variant every package has: the shared model without exclusive knowledge. */
export const SHARED_VARIANT = 'shared'

const DEFAULT_SHARED: MergeSpec = MergeSpecSchema.parse({ method: 'task_arithmetic', lambda: 0.3 })

/** Expert names a merge spec's per-expert table refers to. */
function specExperts(spec: MergeSpec): string[] {
  return 'experts' in spec ? Object.keys(spec.experts) : []
}

export const RecipeSchema = z
  .strictObject({
    name: NameSchema,
    description: z.string().optional(),
    base: PathSchema,
    experts: z.array(RecipeExpertSchema).min(1).max(64),
    shared: MergeSpecSchema.default(DEFAULT_SHARED),
    /**
     * Write the shared model as its own plain graph, `variants/shared.onnx` (one model's bytes; the cheapest
     * graph to serve `variant: shared` from). false: no file; the runner serves `shared` from the twin graph at
     * all-zero weights, which computes the same model (the builder verifies it against the merge in memory).
     */
    shared_file: z.boolean().default(true),
    /**
     * Storage type of the shared model's weight tensors (2-D and up) in the twin graph (issue #18: on a small model
     * the shared weights are a large part of the package). `float16` halves them: the shared merge is rounded to
     * float16 before the exclusive knowledge is taken against it, so a one-hot mix still reproduces each expert as
     * before and all-zero weights give the rounded shared model exactly; each such weight is a FLOAT16 initializer
     * behind a Cast that onnxruntime folds at load (serving computes in float32). Vectors stay float32. Unset:
     * float32, as the experts store them.
     */
    shared_dtype: z.enum(['float32', 'float16']).optional(),
    /**
     * How each expert's exclusive knowledge is compressed. Left out (or without rank, energy or budget): the
     * measured default point, `{ budget: 0.055, dtype: int8 }` (merge.ts, DEFAULT_EXCLUSIVE_BUDGET).
     */
    exclusive: ExclusiveSpecSchema.prefault({}),
    /** The models read token ids: the package carries this tokenizer and the runner accepts text. */
    tokenizer: TokenizerRecipeSchema.optional(),
    router: RouterRecipeSchema,
    variants: z.array(VariantRecipeSchema).default([]),
    verify: VerifyRecipeSchema.default({ examples_per_expert: 8 }),
  })
  .superRefine((r, ctx) => {
    const issue = (path: (string | number)[], message: string) =>
      ctx.addIssue({ code: 'custom', path, message })
    const names = new Set<string>()
    r.experts.forEach((e, i) => {
      if (names.has(e.name)) issue(['experts', i, 'name'], `duplicate expert '${e.name}'`)
      names.add(e.name)
    })
    const checkSpec = (spec: MergeSpec, path: (string | number)[]) => {
      for (const n of specExperts(spec))
        if (!names.has(n)) issue([...path, 'experts', n], `no expert named '${n}'`)
    }
    checkSpec(r.shared, ['shared'])
    const variants = new Set<string>()
    r.variants.forEach((v, i) => {
      if (v.name === SHARED_VARIANT)
        issue(
          ['variants', i, 'name'],
          `'${SHARED_VARIANT}' is built from the recipe's shared merge automatically; pick another name`,
        )
      if (variants.has(v.name)) issue(['variants', i, 'name'], `duplicate variant '${v.name}'`)
      variants.add(v.name)
      checkSpec(v.shared, ['variants', i, 'shared'])
    })
    if (r.router.heldout_fraction + r.router.validation_fraction >= 0.9)
      issue(
        ['router', 'heldout_fraction'],
        'heldout_fraction + validation_fraction must leave at least 10% of the data for training',
      )
    const t = r.tokenizer
    const rt = r.router
    const tokens = t ?? rt.token_inputs
    if (rt.pooling === 'masked' && !tokens)
      issue(
        ['router', 'pooling'],
        "'masked' pools with the attention mask: it needs a tokenizer block (or router.token_inputs)",
      )
    if (rt.bag_of_tokens && !tokens)
      issue(
        ['router', 'bag_of_tokens'],
        'a bag of tokens reads the token ids: it needs a tokenizer block (or router.token_inputs)',
      )
    if (t && rt.token_inputs)
      issue(
        ['router', 'token_inputs'],
        'the tokenizer block names the token inputs already; give one or the other',
      )
    if (rt.ensemble > 1 && rt.kind !== 'mlp')
      issue(['router', 'ensemble'], `only the mlp router is trained per seed (kind is ${rt.kind})`)
    if (rt.mlp_temperature !== undefined && rt.kind !== 'mlp')
      issue(
        ['router', 'mlp_temperature'],
        `is the mlp router's; the ${rt.kind} router's softmax reads router.temperature`,
      )
    if (rt.token_inputs && rt.token_inputs.ids_input === rt.token_inputs.mask_input)
      issue(['router', 'token_inputs', 'mask_input'], 'must differ from ids_input')
    if (!rt.bag_of_tokens && (rt.bag_weighting !== 'mean' || rt.bag_bigrams > 0))
      issue(
        ['router', rt.bag_bigrams > 0 ? 'bag_bigrams' : 'bag_weighting'],
        'weighs or extends the bag of tokens: it needs bag_of_tokens: true',
      )
    if (rt.bag_bigrams_checked && rt.bag_bigrams === 0)
      issue(['router', 'bag_bigrams_checked'], 'checks the pair buckets: it needs bag_bigrams > 0')
    if (rt.bag_of_tokens && rt.kind !== 'mlp')
      issue(
        ['router', 'bag_of_tokens'],
        `only the mlp router reads a bag of tokens (kind is ${rt.kind})`,
      )
    if (rt.dtype === 'float16' && rt.kind !== 'mlp')
      issue(
        ['router', 'dtype'],
        `only the mlp router's weights are stored as float16 (kind is ${rt.kind})`,
      )
    if (rt.kind === 'data-free' && (Array.isArray(rt.feature) || rt.pooling !== 'mean'))
      issue(
        ['router', 'feature'],
        'the data-free router reads one feature, as the matrix it scores does: one tensor, pooling mean',
      )
    if (t && t.ids_input === t.mask_input)
      issue(['tokenizer', 'mask_input'], 'must differ from tokenizer.ids_input')
    const k = r.exclusive.topk_gather
    if (k !== undefined && k >= r.experts.length)
      issue(
        ['exclusive', 'topk_gather'],
        `must be below the number of experts (${r.experts.length}); at ${k} every expert is applied, which the dense graph does faster`,
      )
  })

export type Recipe = z.output<typeof RecipeSchema>
export type RecipeInput = z.input<typeof RecipeSchema>
export type RouterRecipe = Recipe['router']
export type TokenizerRecipe = z.output<typeof TokenizerRecipeSchema>
export type VariantRecipe = Recipe['variants'][number]

/**
 * Parses a recipe, throwing `AppError('INVALID_REQUEST')` that names every bad field by its path.
 * @example parseRecipe(YAML.parse(text))
 */
export function parseRecipe(input: unknown, label = 'recipe'): Recipe {
  const parsed = RecipeSchema.safeParse(input)
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', `${label} is invalid: ${describeIssues(parsed.error)}`)
  return parsed.data
}
