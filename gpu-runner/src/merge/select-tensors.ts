/**
 * Picks tensors by name for exclusive-knowledge compression (Twin-Merging excludes e.g. `.*classifier.*` and
 * `.*bias.*`). A pattern is a `/regex/flags` (JS RegExp, unanchored: add ^ and $ yourself) or a glob matched
 * against the whole name (`*` any run of characters including dots, `?` one character).
 * @module
 */
import { AppError } from '@twinserve/shared'

export interface TensorSelection {
  /** Keep only names matching at least one of these (all names when absent). */
  include?: readonly string[]
  /** Then drop names matching any of these. */
  exclude?: readonly string[]
}

function compile(pattern: string): (name: string) => boolean {
  if (pattern.length === 0) throw new AppError('INVALID_REQUEST', 'empty tensor name pattern')
  const re = /^\/(.*)\/([a-z]*)$/s.exec(pattern)
  if (re) {
    let regex: RegExp
    try {
      regex = new RegExp(re[1] as string, re[2])
    } catch (err) {
      throw new AppError(
        'INVALID_REQUEST',
        `tensor pattern ${pattern} is not a valid regex: ${(err as Error).message}`,
      )
    }
    // A global or sticky regex keeps state between test() calls; matching must not.
    return (name) => {
      regex.lastIndex = 0
      return regex.test(name)
    }
  }
  const escaped = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.')
  const glob = new RegExp(`^${escaped}$`, 's')
  return (name) => glob.test(name)
}

/**
 * The names that pass the selection, in their original order. A pattern that matches no name at all is an
 * INVALID_REQUEST naming it (a typo would otherwise silently select nothing or everything).
 * @example selectTensors(names, { include: ['layer.*.weight'], exclude: ['/classifier|bias/'] })
 */
export function selectTensors(names: readonly string[], selection: TensorSelection): string[] {
  const check = (patterns: readonly string[] | undefined) =>
    (patterns ?? []).map((p) => {
      const test = compile(p)
      if (!names.some(test)) {
        const sample = names.slice(0, 5).join(', ')
        throw new AppError(
          'INVALID_REQUEST',
          `tensor pattern ${p} matches none of the ${names.length} tensors (${sample}${names.length > 5 ? ', …' : ''})`,
        )
      }
      return test
    })
  const include = selection.include === undefined ? undefined : check(selection.include)
  const exclude = check(selection.exclude)
  return names.filter(
    (n) => (include === undefined || include.some((t) => t(n))) && !exclude.some((t) => t(n)),
  )
}
