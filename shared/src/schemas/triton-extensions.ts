/**
 * Bodies of the Triton protocol extensions the V2 clients call beside inference: model configuration
 * (`/config`), statistics (`/stats`) and the repository index. Shapes as tritonclient reads them; keys beyond
 * these pass (Triton's own answers carry many more).
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_model_configuration.md
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_statistics.md
 * @see https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_model_repository.md
 * @module
 */
import { z } from 'zod'

const ConfigTensorSchema = z.looseObject({
  name: z.string(),
  data_type: z.string(),
  dims: z.array(z.number().int().gte(-1)),
})

export const ModelConfigSchema = z.looseObject({
  name: z.string(),
  platform: z.string(),
  backend: z.string().optional(),
  max_batch_size: z.number().int().nonnegative(),
  input: z.array(ConfigTensorSchema),
  output: z.array(ConfigTensorSchema),
})
export type ModelConfig = z.infer<typeof ModelConfigSchema>

const DurationSchema = z.object({
  count: z.number().int().nonnegative(),
  ns: z.number().nonnegative(),
})

export const ModelStatisticsSchema = z.looseObject({
  name: z.string(),
  version: z.string(),
  last_inference: z.number().nonnegative(),
  inference_count: z.number().int().nonnegative(),
  execution_count: z.number().int().nonnegative(),
  inference_stats: z.looseObject({
    success: DurationSchema,
    fail: DurationSchema,
    queue: DurationSchema,
    compute_input: DurationSchema,
    compute_infer: DurationSchema,
    compute_output: DurationSchema,
  }),
  batch_stats: z.array(
    z.looseObject({
      batch_size: z.number().int().nonnegative(),
      compute_input: DurationSchema,
      compute_infer: DurationSchema,
      compute_output: DurationSchema,
    }),
  ),
})
export const InferenceStatisticsSchema = z.object({ model_stats: z.array(ModelStatisticsSchema) })
export type InferenceStatistics = z.infer<typeof InferenceStatisticsSchema>

export const RepositoryIndexSchema = z.array(
  z.looseObject({
    name: z.string(),
    version: z.string().optional(),
    state: z.string().optional(),
    reason: z.string().optional(),
  }),
)
export type RepositoryIndex = z.infer<typeof RepositoryIndexSchema>

/**
 * `POST /v2/repository/models/{m}/load` (Triton's repository extension): which package to load as the model's
 * new version. Triton passes its own load options in `parameters` (`config`, `file:…`); ours is the package
 * directory, relative to the runner's `--repository-root` or absolute inside it. Strict: a misspelt key is an
 * error rather than a reload of something else.
 */
export const RepositoryLoadRequestSchema = z.strictObject({
  parameters: z.strictObject({
    /** The twin package directory (its manifest.json names the model). */
    package: z.string().min(1, 'must name a package directory').max(4096),
  }),
})
export type RepositoryLoadRequest = z.infer<typeof RepositoryLoadRequestSchema>

/**
 * `POST /v2/repository/models/{m}/unload`: the body is optional. tritonclient sends `unload_dependents`; twin
 * models have no dependents, so it changes nothing.
 */
export const RepositoryUnloadRequestSchema = z.strictObject({
  parameters: z.strictObject({ unload_dependents: z.boolean().optional() }).optional(),
})

/**
 * The answer to a load or unload: the version now serving new requests (none after an unload) and the version
 * it replaced, which keeps answering the requests it already holds and is released when they are done.
 */
export const RepositoryLoadResponseSchema = z.strictObject({
  name: z.string(),
  /** The version new requests go to; absent after an unload. */
  version: z.string().optional(),
  state: z.enum(['READY', 'UNAVAILABLE']),
  /** The version replaced (or unloaded), absent when there was none or it is the same version. */
  previous_version: z.string().optional(),
  /** Requests the previous version was still answering when this one took over (0: released at once). */
  previous_in_flight: z.number().int().nonnegative().optional(),
})
export type RepositoryLoadResponse = z.infer<typeof RepositoryLoadResponseSchema>
