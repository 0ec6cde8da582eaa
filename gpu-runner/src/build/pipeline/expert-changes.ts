/**
 * Expert deltas (issue #19): the command line's `--add-expert name=model.onnx`, `--remove-expert name` and
 * `--replace-expert name=model.onnx`, parsed and applied to a package's expert list. The result says, for every
 * expert of the new version, whether its exclusive knowledge is reused from the old package (and at which index)
 * or computed from a model file.
 * @module
 */
import { AppError, NameSchema } from '@twinserve/shared'

export type ExpertChange =
  | { op: 'add' | 'replace'; name: string; model: string }
  | { op: 'remove'; name: string }

/** One expert of the new version: reused from the old package, or computed from `model`. */
export type PlannedExpert =
  | { name: string; source: 'package'; oldIndex: number }
  | { name: string; source: 'model'; model: string }

function bad(message: string): AppError {
  return new AppError('INVALID_REQUEST', message)
}

function checkName(flag: string, name: string): string {
  if (!NameSchema.safeParse(name).success)
    throw bad(
      `${flag} ${name}: '${name}' is not a valid expert name (lowercase letters, digits, '.', '_', '-'; at most 63)`,
    )
  return name
}

/** `name=model.onnx` of `--add-expert` / `--replace-expert`. */
export function parseNamedModel(flag: string, value: string): { name: string; model: string } {
  const eq = value.indexOf('=')
  if (eq <= 0 || eq === value.length - 1)
    throw bad(`${flag} ${value}: expected <name>=<model.onnx>`)
  return { name: checkName(flag, value.slice(0, eq)), model: value.slice(eq + 1) }
}

export function parseChanges(flags: {
  add?: readonly string[]
  remove?: readonly string[]
  replace?: readonly string[]
}): ExpertChange[] {
  return [
    ...(flags.add ?? []).map((v) => ({
      op: 'add' as const,
      ...parseNamedModel('--add-expert', v),
    })),
    ...(flags.remove ?? []).map((v) => ({
      op: 'remove' as const,
      name: checkName('--remove-expert', v),
    })),
    ...(flags.replace ?? []).map((v) => ({
      op: 'replace' as const,
      ...parseNamedModel('--replace-expert', v),
    })),
  ]
}

/**
 * The new version's experts: the old ones in their order (removed ones left out, replaced ones computed from
 * their new model), then the added ones in the order given.
 * @throws AppError INVALID_REQUEST for no change, an expert named twice, adding a name the package has, removing
 * or replacing one it lacks, or removing every expert
 */
export function planExperts(
  old: readonly string[],
  changes: readonly ExpertChange[],
): PlannedExpert[] {
  if (changes.length === 0)
    throw bad('give at least one --add-expert, --remove-expert or --replace-expert with --from')
  const seen = new Set<string>()
  for (const c of changes) {
    if (seen.has(c.name)) throw bad(`expert '${c.name}' is named by more than one change`)
    seen.add(c.name)
    const has = old.includes(c.name)
    if (c.op === 'add' && has)
      throw bad(
        `--add-expert ${c.name}: the package already has an expert '${c.name}' (use --replace-expert to change it)`,
      )
    if (c.op !== 'add' && !has)
      throw bad(
        `--${c.op}-expert ${c.name}: the package has no expert '${c.name}' (it has ${old.join(', ')})`,
      )
  }
  const byName = new Map(changes.map((c) => [c.name, c]))
  const planned: PlannedExpert[] = []
  old.forEach((name, oldIndex) => {
    const c = byName.get(name)
    if (c?.op === 'remove') return
    planned.push(
      c?.op === 'replace'
        ? { name, source: 'model', model: c.model }
        : { name, source: 'package', oldIndex },
    )
  })
  for (const c of changes)
    if (c.op === 'add') planned.push({ name: c.name, source: 'model', model: c.model })
  if (planned.length === 0) throw bad('removing every expert leaves nothing to serve')
  return planned
}
