/**
 * The text zoo as other code reads it (`@twinserve/zoo/text`): `models/zoo.json` (written once by make_zoo.py; its
 * paths are relative to the models folder) and the committed validation/test splits. Python made the files; reading
 * them needs none.
 * @module
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { AppError, NameSchema } from '@twinserve/shared'
import { z } from 'zod'

/** The zoo's models folder, from the repository root. */
export const TEXT_ZOO_DIR = 'zoo/text/models'
/** Name of the raw-text input in the routing data (`{"expert", "inputs": {"text": …}}`). */
export const TEXT_ROUTING_INPUT = 'text'

const Sha256Schema = z.string().regex(/^[0-9a-f]{64}$/)
const AccuracySchema = z.number().min(0).max(1)
const SplitSchema = z.enum(['val', 'test'])
export type TextSplit = z.output<typeof SplitSchema>

export const TextZooTaskSchema = z.object({
  name: NameSchema,
  description: z.string(),
  /** Label names in logit order: the task reads the first classes.length logits. */
  classes: z.array(z.string()).min(2),
  split: z.strictObject({ train: z.number().int(), val: z.number().int(), test: z.number().int() }),
  /** Accuracy of always answering the most frequent test label. */
  test_majority: AccuracySchema,
  files: z.strictObject({ val: z.string(), test: z.string() }),
  routing_examples: z.number().int().nonnegative(),
  expert: z.object({ file: z.string(), best_epoch: z.number().int().nonnegative() }),
})

export const TextZooManifestSchema = z.object({
  format: z.literal('twinserve.text-zoo'),
  formatVersion: z.literal(1),
  inputs: z.array(z.object({ name: z.string(), dtype: z.literal('int64') })).length(2),
  output: z.object({ name: z.string(), shape: z.tuple([z.string(), z.number().int()]) }),
  tokenizer: z.object({
    file: z.string(),
    config: z.string(),
    max_length: z.number().int().min(3),
    pad_id: z.number().int().nonnegative(),
    cls_id: z.number().int().nonnegative(),
    sep_id: z.number().int().nonnegative(),
    parity_fixture: z.string(),
  }),
  files: z.record(
    z.string(),
    z.strictObject({ path: z.string(), bytes: z.number().int().positive(), sha256: Sha256Schema }),
  ),
  tasks: z.array(TextZooTaskSchema).min(1),
  routing: z.object({ file: z.string() }),
  /** accuracy[model][task]: model is `base` or an expert (task) name. */
  accuracy: z.record(
    z.string(),
    z.record(z.string(), z.strictObject({ val: AccuracySchema, test: AccuracySchema })),
  ),
})
export type TextZooManifest = z.output<typeof TextZooManifestSchema> & { dir: string }
export type TextZooTask = z.output<typeof TextZooTaskSchema>

/** Reads and checks `<dir>/zoo.json`; `dir` (absolute, or relative to the working directory) is kept for paths. */
export function readTextZoo(dir: string = TEXT_ZOO_DIR): TextZooManifest {
  const path = join(dir, 'zoo.json')
  const parsed = TextZooManifestSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')))
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', `${path}: ${z.prettifyError(parsed.error)}`)
  return { ...parsed.data, dir: resolve(dir) }
}

/** Absolute path of a file zoo.json names (its paths are relative to the models folder). */
export const textZooPath = (zoo: TextZooManifest, file: string): string => resolve(zoo.dir, file)

export interface TextExample {
  text: string
  /** Index into the task's classes. */
  label: number
}

const ExampleSchema = z.strictObject({ text: z.string(), label: z.number().int().nonnegative() })

/** A task's committed validation or test split (`{"text", "label"}` per line). */
export function loadTextSplit(zoo: TextZooManifest, task: string, split: TextSplit): TextExample[] {
  const entry = zoo.tasks.find((t) => t.name === task)
  if (!entry) throw new AppError('INVALID_REQUEST', `the text zoo has no task '${task}'`)
  const path = textZooPath(zoo, entry.files[split])
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line, i) => {
      const row = ExampleSchema.safeParse(JSON.parse(line))
      if (!row.success || row.data.label >= entry.classes.length)
        throw new AppError(
          'INVALID_REQUEST',
          `${path}, line ${i + 1}: not {"text", "label" < ${entry.classes.length}}`,
        )
      return row.data
    })
}

/** Absolute path of the routing data (`{"expert": task, "inputs": {"text": …}}` per line). */
export const textRoutingPath = (zoo: TextZooManifest): string => textZooPath(zoo, zoo.routing.file)
