/**
 * Path parameters and query strings, checked against their shared schemas: 400 INVALID_REQUEST naming the bad
 * part (`id: …`, `query.status: …`) instead of a lookup with a value no row can have.
 * @module
 */
import { AppError, describeIssues, NameSchema } from '@twinserve/shared'
import type { Context } from 'hono'
import type { z } from 'zod'

/** The admin APIs' JSON bodies are small; anything bigger is a mistake. */
export const MAX_ADMIN_BODY_BYTES = 64 * 1024

export function pathParam<S extends z.ZodType>(c: Context, name: string, schema: S): z.output<S> {
  const parsed = schema.safeParse(c.req.param(name))
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', describeIssues(parsed.error, { root: name }))
  return parsed.data
}

export function queryParams<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  const parsed = schema.safeParse(c.req.query())
  if (!parsed.success)
    throw new AppError('INVALID_REQUEST', describeIssues(parsed.error, { root: 'query' }))
  return parsed.data
}

/** The `:model` path parameter, checked against the package naming rule (400 otherwise). */
export function modelParam(c: Context): string {
  const raw = c.req.param('model') ?? ''
  const parsed = NameSchema.safeParse(raw)
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      `model name '${raw.slice(0, 80)}' is invalid: ${parsed.error.issues[0]?.message ?? ''}`,
    )
  return parsed.data
}
