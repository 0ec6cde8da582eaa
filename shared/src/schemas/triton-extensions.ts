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
