/**
 * Build steps for a recipe with a `tokenizer` (text models): read the tokenizer files once and check them against
 * the base model's inputs (step 1, so routing texts can be tokenized), and copy them byte for byte into the package
 * with the input rule the runner applies (step 4). Tokenizing is text/text-tokenizer.ts, shared with the runner.
 * @module
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AppError, type PackageTokenizer, type TokenizerRecipe } from '@twinserve/shared'
import { TextTokenizer } from '../../text/text-tokenizer.ts'
import type { IoTensor } from '../import/model-io.ts'
import type { LoadedRecipe } from '../import/recipe-file.ts'
import type { WrittenFile } from './write-model.ts'

/** Where the package keeps the tokenizer files. */
export const TOKENIZER_DIR = 'tokenizer'

export interface RecipeTokenizer {
  tokenizer: TextTokenizer
  /** The files' bytes, as read (copied unchanged into the package). */
  json: Uint8Array
  config?: Uint8Array
}

async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readFile(path)
  } catch (err) {
    throw new AppError('INVALID_REQUEST', `recipe ${what} ${path}: file not found or unreadable`, {
      cause: err,
    })
  }
}

/**
 * Reads the recipe's tokenizer and checks that the base model reads what it produces: exactly the two inputs
 * `ids_input` and `mask_input`, int64 [batch, seq] (a text request has nothing to feed any other input).
 */
export async function readRecipeTokenizer(
  spec: TokenizerRecipe,
  files: NonNullable<LoadedRecipe['files']['tokenizer']>,
  inputs: readonly IoTensor[],
): Promise<RecipeTokenizer> {
  const want = [spec.ids_input, spec.mask_input]
  const names = inputs.map((i) => i.name)
  const odd = inputs.filter((i) => !want.includes(i.name))
  if (odd.length > 0 || want.some((n) => !names.includes(n)))
    throw new AppError(
      'INVALID_REQUEST',
      `recipe tokenizer: the base model's inputs are ${names.join(', ')}; a tokenizer feeds exactly ${want.join(' and ')} (set tokenizer.ids_input / mask_input to the model's names)`,
    )
  for (const i of inputs)
    if (i.elem !== 'int64' || i.dims.length !== 2)
      throw new AppError(
        'INVALID_REQUEST',
        `recipe tokenizer: input '${i.name}' is ${i.elem} [${i.dims.join(', ')}]; token inputs must be int64 [batch, seq]`,
      )
  const json = await readInput(files.file, 'tokenizer.file')
  const config = files.config ? await readInput(files.config, 'tokenizer.config') : undefined
  const tokenizer = TextTokenizer.fromJson(
    json,
    config,
    {
      maxLength: spec.max_length,
      padId: spec.pad_id,
      truncation: spec.truncation,
      idsInput: spec.ids_input,
      maskInput: spec.mask_input,
    },
    files.file,
  )
  return { tokenizer, json, ...(config ? { config } : {}) }
}

async function copyInto(staging: string, rel: string, bytes: Uint8Array): Promise<WrittenFile> {
  const path = join(staging, rel)
  await mkdir(join(staging, TOKENIZER_DIR), { recursive: true })
  await writeFile(path, bytes)
  return { path, bytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') }
}

/** Copies the tokenizer files into the staging package; returns them and the manifest's `tokenizer`. */
export async function writeTokenizerFiles(
  staging: string,
  read: RecipeTokenizer,
): Promise<{ files: WrittenFile[]; manifest: PackageTokenizer }> {
  const file = `${TOKENIZER_DIR}/tokenizer.json`
  const config = read.config ? `${TOKENIZER_DIR}/tokenizer_config.json` : undefined
  const files = [await copyInto(staging, file, read.json)]
  if (config && read.config) files.push(await copyInto(staging, config, read.config))
  return {
    files,
    manifest: { file, ...(config ? { config } : {}), ...read.tokenizer.rule },
  }
}
