/**
 * The request's absolute deadline: REQUEST_DEADLINE_MS from arrival, or sooner when the client sends
 * `x-twinserve-deadline-ms` (a positive integer; larger values are capped, not refused).
 * @module
 */
import { DEADLINE_HEADER, parseDeadlineHeader } from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'

export function requestDeadline(c: Context<AppEnv>, arrivedMs: number): number {
  const max = c.get('config').REQUEST_DEADLINE_MS
  const asked = c.req.header(DEADLINE_HEADER)
  if (asked === undefined) return arrivedMs + max
  return arrivedMs + Math.min(parseDeadlineHeader(asked), max)
}
