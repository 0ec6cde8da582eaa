/**
 * `zoo.json`: what the zoo builder wrote next to the models, and what other code (the twin builder, the
 * benchmarks, the demo) reads to find the files, their tasks and the accuracies measured when they were made.
 * Everything in it is reproducible (no timestamps, no timings), so regenerating the zoo gives identical bytes.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AppError, NameSchema } from '@twinserve/shared'
import { z } from 'zod'

export const ZOO_FORMAT = 'twinserve.zoo'
export const ZOO_FORMAT_VERSION = 1

const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/)
const AccuracySchema = z.number().min(0).max(1)
/** Test-split accuracy per task name. */
const AccuracyByTaskSchema = z.record(z.string(), AccuracySchema)

export const ZooFileSchema = z.strictObject({
  /** Relative to the zoo directory. */
  file: z.string(),
  sha256: Sha256Schema,
  bytes: z.number().int().positive(),
})

export const ZooTrainingSchema = z.strictObject({
  /** Task whose training split was used. */
  task: z.string(),
  trainExamples: z.number().int().positive(),
  valExamples: z.number().int().nonnegative(),
  epochsPlanned: z.number().int().positive(),
  epochsRun: z.number().int().positive(),
  /** Epoch whose weights were kept (best validation accuracy). */
  bestEpoch: z.number().int().positive(),
  valAccuracy: AccuracySchema.optional(),
  optimizer: z.string(),
  lr: z.number().positive(),
  lrSchedule: z.enum(['constant', 'cosine']),
  batchSize: z.number().int().positive(),
  patience: z.number().int().positive().optional(),
  seed: z.number().int(),
  /** 'base' for experts: every weight was fine-tuned from the base; null for the base (seeded init). */
  initFrom: z.string().nullable(),
})

export const ZooTaskEntrySchema = z.strictObject({
  name: NameSchema,
  description: z.string(),
  source: z.enum(['fashion-mnist', 'digits']),
  classes: z.array(z.string()).length(10),
  split: z.strictObject({
    train: z.number().int().nonnegative(),
    val: z.number().int().nonnegative(),
    test: z.number().int().nonnegative(),
  }),
})

export const ZooExpertSchema = ZooFileSchema.extend({
  name: NameSchema,
  training: ZooTrainingSchema,
  /** This expert's test accuracy on every task (its own task is the one it was trained for). */
  testAccuracy: AccuracyByTaskSchema,
})

export const ZooManifestSchema = z.strictObject({
  format: z.literal(ZOO_FORMAT),
  formatVersion: z.literal(ZOO_FORMAT_VERSION),
  description: z.string(),
  input: z.strictObject({
    name: z.string(),
    shape: z.array(z.union([z.number(), z.string()])),
    range: z.tuple([z.number(), z.number()]),
  }),
  output: z.strictObject({ name: z.string(), shape: z.array(z.union([z.number(), z.string()])) }),
  /** Layer widths of the MLP, input to output. */
  layers: z.array(z.number().int().positive()),
  parameters: z.number().int().positive(),
  /** Seeds that define the zoo: task definitions, splits, training. */
  seeds: z.record(z.string(), z.number().int()),
  /** onnxruntime intra-op threads used for training (part of the determinism claim). */
  threads: z.number().int().positive(),
  tasks: z.array(ZooTaskEntrySchema).min(1),
  base: ZooFileSchema.extend({
    training: ZooTrainingSchema,
    testAccuracy: AccuracyByTaskSchema,
  }),
  experts: z.array(ZooExpertSchema).min(1),
  /** Where routing examples were written (git-ignored, regenerated), relative to the repository root. */
  routing: z.strictObject({
    file: z.string(),
    perTask: z.number().int().nonnegative(),
    split: z.literal('train'),
  }),
  totalBytes: z.number().int().positive(),
  data: z.array(z.string()),
})
export type ZooManifest = z.infer<typeof ZooManifestSchema>
export type ZooExpert = z.infer<typeof ZooExpertSchema>
export type ZooTraining = z.infer<typeof ZooTrainingSchema>

/** The committed demo zoo, relative to the repository root. */
export const DEMO_ZOO_DIR = 'zoo/fashion/models'

/** Reads and validates `<dir>/zoo.json`. */
export function readZooManifest(dir: string): ZooManifest {
  const path = join(dir, 'zoo.json')
  let json: unknown
  try {
    json = JSON.parse(readFileSync(path, 'utf8'))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new AppError(
      code === 'ENOENT' ? 'NOT_FOUND' : 'INVALID_MODEL',
      `zoo manifest ${path}: ${code === 'ENOENT' ? 'missing (run `npm run zoo`)' : (err as Error).message}`,
      { cause: err },
    )
  }
  const parsed = ZooManifestSchema.safeParse(json)
  if (!parsed.success)
    throw new AppError(
      'INVALID_MODEL',
      `zoo manifest ${path}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    )
  return parsed.data
}
