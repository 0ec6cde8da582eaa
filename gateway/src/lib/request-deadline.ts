import { AppError, NameSchema } from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { DEADLINE_HEADER } from './runner-client.ts'

/**
 * The request's absolute deadline: REQUEST_DEADLINE_MS from arrival, or sooner when the client sends
 * `x-twinserve-deadline-ms` (a positive integer; larger values are capped, not refused).
 */
export function requestDeadline(c: Context<AppEnv>, arrivedMs: number): number {
  const max = c.get('config').REQUEST_DEADLINE_MS
  const asked = c.req.header(DEADLINE_HEADER)
  if (asked === undefined) return arrivedMs + max
  if (!/^\d{1,9}$/.test(asked) || Number(asked) === 0)
    throw new AppError('INVALID_REQUEST', `${DEADLINE_HEADER} must be a positive integer (ms)`)
  return arrivedMs + Math.min(Number(asked), max)
}

/** The `:model` path parameter, checked against the package naming rule (400 otherwise). */
export function modelParam(c: Context<AppEnv>): string {
  const raw = c.req.param('model') ?? ''
  const parsed = NameSchema.safeParse(raw)
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      `model name '${raw.slice(0, 80)}' is invalid: ${parsed.error.issues[0]?.message ?? ''}`,
    )
  return parsed.data
}
