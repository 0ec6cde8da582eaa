/**
 * The twin package: what `twinserve build` writes and `twinserve serve` loads. A directory with
 * `manifest.json` (this schema) and ONNX files, each listed with its sha256 so that a tampered or incomplete
 * package is refused at load.
 *
 * The twin graph (`model.file`) contract, which the runner relies on:
 * - inputs: the base model's inputs unchanged, plus the control inputs of `TWIN_INPUTS` (below: name, type,
 *   dims, and the value a row gets when its request does not set it). The builder declares them from this spec,
 *   the runner checks a loaded graph against it and encodes every batch's controls from it;
 * - outputs: the base model's outputs unchanged, plus
 *   - `expert_weights` float32 [batch, T]  the weights actually applied to each row
 * With all weights 0 the graph computes the shared model exactly.
 *
 * Exclusive knowledge inside the twin graph, by name (the builder writes it; the runner's materialised
 * `merge_method` path reads it back to rebuild each expert's delta). For every manifest `exclusive[]` entry `<w>`:
 * - `<w>` stays an initializer of the twin graph, same name and shape as in the base graph, holding the SHARED
 *   value θ_s (so a graph fed all-zero weights is the shared model);
 * - kind `matrix`, stored shape [rows, cols] (a MatMul weight X·W is [d_in, d_out]; for Gemm transB=1 the factors
 *   still follow the stored layout [d_out, d_in]):
 *   - `<w>.twin_u`              float [rows, R]   (float32, or float16 followed by a Cast to float32 in the graph)
 *   - `<w>.twin_v`              float [R, cols]   (Vᵀ, pre-transposed; float32 or float16 like `twin_u`)
 *   - `<w>.twin_sigma`          float [R]         singular values
 *   - `<w>.twin_expert_of_rank` int64 [R]         expert index (manifest `experts[].index`) of each rank column;
 *     per tensor, because ranks differ per tensor; R = Σ_t ranks[t] (R = 0: the four are absent); a package
 *     built with `exclusive.topk_gather` stores columns expert-major, every expert padded to the tensor's
 *     largest rank r with σ = 0, so there R = T·r
 *   and expert t's delta is ΔW_t = Σ_{r : e(r)=t} σ_r · U[:, r] ⊗ V[r, :] (a rank-0 expert has ΔW_t = 0);
 * - kind `matrix` with manifest `basis` (recipe `exclusive.shared_basis`): instead of the four above,
 *   - `<w>.twin_basis_u`        float [rows, Ri]  input-side basis A shared by the experts (stored like `twin_u`)
 *   - `<w>.twin_basis_v`        float [Ro, cols]  output-side basis B
 *   - `<w>.twin_cores`          float [T, Ri, Ro] one core per expert (float32, or float16 followed by a Cast)
 *   and expert t's delta is ΔW_t = A·C_t·B;
 * - kind `vector`, shape [d]: `<w>.twin_delta` float [T, d], row t = expert t's exact delta.
 * A row with expert weights w then computes θ_s + Σ_t w_t·Δ_t in every exclusive tensor.
 * Variants are plain graphs (the base model's inputs and outputs only): static merges served as A/B arms.
 * @module
 */
import { z } from 'zod'
import { TensorMetadataSchema } from './inference.ts'

export const PACKAGE_FORMAT = 'twinserve.twin-package'
export const PACKAGE_FORMAT_VERSION = 1

/** One control input of the twin graph. */
export interface TwinInputSpec {
  /** Input name in the twin graph. */
  readonly name: string
  readonly dtype: 'float32' | 'int64'
  /** [batch, T]: one value per expert and row; [batch, 1]: one value per row. */
  readonly dims: readonly ['batch', 'T' | 1]
  /** A row's value when its request does not set it: a number, or `'T'` for the number of experts. */
  readonly absent: number | 'T'
  /**
   * true for a control added after packages were first built: a twin graph may lack it (and is served without
   * it), and a request that needs it on such a package is refused with a 400 naming the package and the control.
   */
  readonly optional: boolean
  /** The request parameter (merge control) that sets it, if any. */
  readonly parameter?: string
}

/**
 * The twin graph's control inputs. Adding a control means adding it here and to its consumers: the graph that
 * reads it (gpu-runner/src/build/twin-graph/expert-weights.ts) and the request → row mapping
 * (gpu-runner/src/model/controls.ts); declaration, contract check and encoding follow from this entry.
 */
export const TWIN_INPUTS = {
  /** Explicit expert weights per row (used where `use_router` is 0). */
  mixWeights: {
    name: 'mix_weights',
    dtype: 'float32',
    dims: ['batch', 'T'],
    absent: 0,
    optional: false,
    parameter: 'experts',
  },
  /** 1: the row's weights come from the embedded router; 0: from `mix_weights`. */
  useRouter: {
    name: 'use_router',
    dtype: 'float32',
    dims: ['batch', 1],
    absent: 0,
    optional: false,
  },
  /** 1 keeps an expert, 0 excludes it (router rows only), then renormalised. */
  expertMask: {
    name: 'expert_mask',
    dtype: 'float32',
    dims: ['batch', 'T'],
    absent: 1,
    optional: false,
    parameter: 'exclude_experts',
  },
  /** Keep the row's k largest router weights (k >= T: dense), renormalised. */
  topK: {
    name: 'top_k',
    dtype: 'int64',
    dims: ['batch', 1],
    absent: 'T',
    optional: false,
    parameter: 'top_k',
  },
  /**
   * A router row whose router is less sure than this (its largest weight over the experts the row allows,
   * after `expert_mask`, before `top_k`) applies no expert: weights 0, the shared model. 0: never.
   */
  abstainBelow: {
    name: 'abstain_below',
    dtype: 'float32',
    dims: ['batch', 1],
    absent: 0,
    optional: true,
    parameter: 'abstain_below',
  },
} as const satisfies Record<string, TwinInputSpec>
export type TwinInputKey = keyof typeof TWIN_INPUTS

/** The weights each row applied, float32 [batch, T] (0 for every expert: the shared model). */
export const TWIN_OUTPUT_WEIGHTS = 'expert_weights'
/** Suffixes of the exclusive-knowledge initializers `<w><suffix>` (see the module comment). */
export const TWIN_FACTOR_SUFFIXES = {
  u: '.twin_u',
  v: '.twin_v',
  sigma: '.twin_sigma',
  expertOfRank: '.twin_expert_of_rank',
  delta: '.twin_delta',
  basisU: '.twin_basis_u',
  basisV: '.twin_basis_v',
  cores: '.twin_cores',
} as const

/** Names users type in recipes and requests: experts, variants, packages. */
export const NameSchema = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,62}$/,
    'lowercase letters, digits, dot, dash, underscore; 1-63 chars',
  )

const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/)
/** A file inside the package: relative, no parent references. */
const PackagePathSchema = z
  .string()
  .min(1)
  .refine(
    (p) => !p.startsWith('/') && !p.split('/').includes('..'),
    'must be a relative path inside the package',
  )

export const PackageExpertSchema = z.strictObject({
  name: NameSchema,
  /** Column of this expert in `mix_weights` / `expert_weights`. */
  index: z.number().int().nonnegative(),
  /** Label names of the expert's task in logit order (recipe `experts[].labels`); it reads the first ones. */
  labels: z.array(z.string()).min(1).optional(),
})

/** The raw-text input a package with a tokenizer accepts: V2 BYTES [n], one UTF-8 string per row. */
export const TEXT_INPUT = 'text'

/**
 * A package's tokenizer (recipe `tokenizer`): its files inside the package (listed in `files` with their sha256
 * like every other file) and the input rule the builder tokenized the routing data with and the runner applies
 * to `text` inputs.
 */
export const PackageTokenizerSchema = z.strictObject({
  file: PackagePathSchema,
  config: PackagePathSchema.optional(),
  maxLength: z.number().int().min(3),
  padId: z.number().int().nonnegative(),
  truncation: z.boolean(),
  idsInput: z.string().min(1),
  maskInput: z.string().min(1),
})
export type PackageTokenizer = z.infer<typeof PackageTokenizerSchema>

export const ExclusiveTensorSchema = z.strictObject({
  /** Initializer name in the base graph. */
  name: z.string(),
  kind: z.enum(['matrix', 'vector']),
  shape: z.array(z.number().int().positive()),
  /** Rank kept per expert (matrices); vectors are exact. */
  ranks: z.array(z.number().int().nonnegative()).optional(),
  /** Relative Frobenius reconstruction error per expert, ‖v − v̂‖ / ‖v‖. */
  relError: z.array(z.number().nonnegative()),
  /**
   * Present when the matrix is stored as a basis shared by the experts (recipe `exclusive.shared_basis`): the
   * ranks of its input-side and output-side bases. `ranks` then gives each expert's rank within them.
   */
  basis: z
    .strictObject({ rankIn: z.number().int().positive(), rankOut: z.number().int().positive() })
    .optional(),
})

/** How a package routes: a trained MLP, per-expert prototypes, or from the stored factors alone (data-free). */
export const RouterKindSchema = z.enum(['mlp', 'prototype', 'data-free'])

/**
 * A bag-of-ids prompt classifier (recipe `router.prompt_likelihood.bag`): logits = x·W + b over the prompt's
 * features (a unigram id's key is the id, a hashed bigram's −1 − its bucket), x unit-norm presence indicators.
 */
export const PromptBagManifestSchema = z.strictObject({
  /** A prompt whose largest probability reaches this routes to that expert alone, unscored. */
  skipAbove: z.number().gt(0).max(1),
  /** Hashed id-bigram buckets (0: none). */
  bigrams: z.number().int().min(0),
  /** The features with weights, ascending. */
  keys: z.array(z.number().int()),
  /** Base64 of the float32 weights [keys, T], row-major, little-endian. */
  weights: z.string(),
  /** [T] */
  bias: z.array(z.number()),
})
export type PromptBagManifest = z.output<typeof PromptBagManifestSchema>

export const RouterInfoSchema = z.strictObject({
  kind: RouterKindSchema,
  /** Tensor of the shared model whose values feed the router. */
  feature: z.string(),
  /** Every tensor the router reads, concatenated in this order (recipe `router.feature` as a list). */
  features: z.array(z.string()).min(2).optional(),
  /** How the features are pooled over the sequence (recipe `router.pooling`; absent: mean). */
  pooling: z.enum(['mean', 'masked']).optional(),
  /** Whether the router also reads the input ids' bag of tokens (recipe `router.bag_of_tokens`). */
  bagOfTokens: z.boolean().optional(),
  /** How the bag weighs each id (recipe `router.bag_weighting`; absent: mean). */
  bagWeighting: z.enum(['mean', 'tfidf']).optional(),
  /** Buckets of the bag's hashed token pairs (recipe `router.bag_bigrams`; absent: none). */
  bagBigrams: z.number().int().positive().optional(),
  /** Each pair bucket holds one pair (recipe `router.bag_bigrams_checked`; absent: unchecked). */
  bagBigramsChecked: z.literal(true).optional(),
  /** Width of the router's input: the pooled features (and the bag of tokens, the vocabulary wide). */
  featureSize: z.number().int().positive(),
  /** Accuracy on the builder's held-out split of the routing data (never the test split). */
  heldoutAccuracy: z.number().min(0).max(1).optional(),
  /** Default `abstain_below` of router requests that do not set one (recipe `router.abstain_below`). */
  abstainBelow: z.number().min(0).max(1).optional(),
  /**
   * Decoders: route a sequence by each expert's likelihood of its prompt, softmax(−NLL_e / temperature), rather
   * than by the embedded router (recipe `router.prompt_likelihood`; absent: the router).
   */
  promptLikelihood: z
    .strictObject({
      temperature: z.number().gt(0),
      /** Score the mean NLL per prompt token rather than the sum (recipe `per_token`). */
      perToken: z.boolean().optional(),
      /** A log prior per expert (manifest order) added to the logits (recipe `log_prior`). */
      logPrior: z.array(z.number()).optional(),
      /** Power of the graph router's weights multiplied in (recipe `router_weight`). */
      routerWeight: z.number().min(0).optional(),
      /** Route to the top expert alone when its posterior reaches this (recipe `hard_above`). */
      hardAbove: z.number().gt(0).max(1).optional(),
      /** Keep the router's mix when its largest weight reaches this; score the rest (recipe `router_above`). */
      routerAbove: z.number().gt(0).max(1).optional(),
      /** The prompt classifier that skips scoring when sure (recipe `bag`; gpu-runner generate/prompt-bag.ts). */
      bag: PromptBagManifestSchema.optional(),
    })
    .optional(),
})

/**
 * The router's distribution on the routing data at build time (issue #19), from the embedded router on the
 * held-out split as verification runs it: what the runner's drift metric compares live routing with. Optional:
 * packages built before it load and serve, without a drift series.
 */
/** A routed weight above this counts the row towards that expert's traffic share (runner, gateway, builder). */
export const ROUTED_WEIGHT_THRESHOLD = 0.1

export const RoutingProfileSchema = z.strictObject({
  /** Held-out routing rows it summarises. */
  rows: z.number().int().positive(),
  /** Per expert (manifest order): its mean weight over the rows. */
  meanWeight: z.array(z.number().min(0).max(1)),
  /** Per expert: the fraction of rows that gave it a weight above 0.1 (its traffic share). */
  trafficShare: z.array(z.number().min(0).max(1)),
})
export type RoutingProfile = z.infer<typeof RoutingProfileSchema>

export const VariantSchema = z.strictObject({
  name: NameSchema,
  file: PackagePathSchema,
  description: z.string(),
  /** Whether the variant carries exclusive knowledge (false for static merges). */
  exclusive: z.boolean(),
})

export const PackageManifestSchema = z.strictObject({
  format: z.literal(PACKAGE_FORMAT),
  formatVersion: z.literal(PACKAGE_FORMAT_VERSION),
  name: NameSchema,
  createdAt: z.string(),
  experts: z.array(PackageExpertSchema).min(1),
  /** The base model's inputs and outputs (V2 metadata; -1 = variable). */
  inputs: z.array(TensorMetadataSchema).min(1),
  outputs: z.array(TensorMetadataSchema).min(1),
  model: z.strictObject({ file: PackagePathSchema }),
  /** Present when the models read token ids and the package carries their tokenizer. */
  tokenizer: PackageTokenizerSchema.optional(),
  router: RouterInfoSchema,
  routingProfile: RoutingProfileSchema.optional(),
  exclusive: z.array(ExclusiveTensorSchema),
  variants: z.array(VariantSchema),
  /** The recipe the package was built from, as parsed (paths as given). */
  recipe: z.unknown(),
  /** sha256 of every file in the package except manifest.json. */
  files: z.record(PackagePathSchema, Sha256Schema),
})
export type PackageManifest = z.infer<typeof PackageManifestSchema>
export type PackageExpert = z.infer<typeof PackageExpertSchema>
export type Variant = z.infer<typeof VariantSchema>
