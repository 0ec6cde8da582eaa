/**
 * Structured logs: one JSON object per line on stdout, which Workers Logs (observability) and `wrangler tail`
 * index by field. Every line carries `event`; request lines carry `request_id`.
 * @module
 */

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]
export type LogFields = Record<string, string | number | boolean | null | undefined>

let threshold = LOG_LEVELS.indexOf('info')

/** Sets the isolate's minimum level (from LOG_LEVEL); lines below it are not written. */
export function setLogLevel(level: LogLevel): void {
  threshold = LOG_LEVELS.indexOf(level)
}

export function log(level: LogLevel, event: string, fields: LogFields = {}): void {
  if (LOG_LEVELS.indexOf(level) < threshold) return
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
