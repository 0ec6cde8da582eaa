/**
 * The WHERE clause of a D1 list query from optional equality filters and fixed conditions, with its bind values
 * in order. Column names come from code, never from a request; values are always bound.
 * @module
 */
export interface Where {
  /** `WHERE a = ? AND …`, or '' without conditions. */
  sql: string
  binds: string[]
}

/** @example where({ tenant: 'acme', model: undefined }, ['revoked_at IS NULL']) // WHERE tenant = ? AND revoked_at IS NULL */
export function where(
  equal: Record<string, string | undefined>,
  fixed: readonly string[] = [],
): Where {
  const conditions: string[] = []
  const binds: string[] = []
  for (const [column, value] of Object.entries(equal))
    if (value !== undefined) {
      conditions.push(`${column} = ?`)
      binds.push(value)
    }
  conditions.push(...fixed)
  return { sql: conditions.length ? `WHERE ${conditions.join(' AND ')}` : '', binds }
}
