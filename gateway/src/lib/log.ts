/**
 * Structured logs: one JSON object per line on stdout, which Workers Logs (observability) and `wrangler tail`
 * index by field. Every line carries `event`; request lines carry `request_id`.
 * @module
 */

type Level = 'debug' | 'info' | 'warn' | 'error'
export type LogFields = Record<string, string | number | boolean | null | undefined>

export function log(level: Level, event: string, fields: LogFields = {}): void {
  const line = JSON.stringify({ ts: new Date().toISOString(), level, event, ...fields })
  if (level === 'error') console.error(line)
  else if (level === 'warn') console.warn(line)
  else console.log(line)
}

/** A thrown value as log fields; the cause chain matters when a runner call fails inside fetch. */
export function errorFields(err: unknown): LogFields {
  if (!(err instanceof Error)) return { error: String(err) }
  const cause = err.cause instanceof Error ? err.cause.message : undefined
  return { error: err.message, error_name: err.name, error_cause: cause }
}
