/**
 * Loads a build recipe from YAML or JSON (by extension; YAML otherwise, which also reads JSON) and resolves its
 * paths against the recipe's directory, so `twinserve build` works from any working directory.
 * @module
 */
import { readFile } from 'node:fs/promises'
import { dirname, extname, resolve } from 'node:path'
import { AppError, parseRecipe, type Recipe } from '@twinserve/shared'
import YAML from 'yaml'

export interface LoadedRecipe {
  path: string
  recipe: Recipe
  /** Absolute paths of the files the recipe names. */
  files: {
    base: string
    experts: string[]
    routing: string
    /** The recipe's tokenizer files, when it has one. */
    tokenizer?: { file: string; config?: string }
  }
}

export async function loadRecipe(path: string): Promise<LoadedRecipe> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new AppError(
      'INVALID_REQUEST',
      `recipe ${path}: ${code === 'ENOENT' ? 'file not found' : `cannot read (${code})`}`,
      { cause: err },
    )
  }
  let data: unknown
  try {
    data = extname(path).toLowerCase() === '.json' ? JSON.parse(text) : YAML.parse(text)
  } catch (err) {
    throw new AppError(
      'INVALID_REQUEST',
      `recipe ${path} is not valid ${extname(path).toLowerCase() === '.json' ? 'JSON' : 'YAML'}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
      { cause: err },
    )
  }
  const recipe = parseRecipe(data, `recipe ${path}`)
  const dir = dirname(resolve(path))
  return {
    path,
    recipe,
    files: {
      base: resolve(dir, recipe.base),
      experts: recipe.experts.map((e) => resolve(dir, e.model)),
      routing: resolve(dir, recipe.router.data),
      ...(recipe.tokenizer
        ? {
            tokenizer: {
              file: resolve(dir, recipe.tokenizer.file),
              ...(recipe.tokenizer.config ? { config: resolve(dir, recipe.tokenizer.config) } : {}),
            },
          }
        : {}),
    },
  }
}
