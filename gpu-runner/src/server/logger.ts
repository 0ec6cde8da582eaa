/**
 * Structured logs: one JSON object per line on stdout (`{"time","level","msg",...fields}`), so that log shippers
 * parse them without patterns and every line about a request carries its `request_id`.
 * @module
 */

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]
export type LogFields = Record<string, unknown>

export interface Logger {
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger
}

/** Errors as plain fields (JSON.stringify drops Error's own properties); causes included, one level deep. */
export function errorFields(err: unknown): LogFields {
  if (!(err instanceof Error)) return { error: String(err) }
  const code = (err as { code?: unknown }).code
  const cause = err.cause instanceof Error ? `${err.cause.name}: ${err.cause.message}` : undefined
  return {
    error: err.message,
    error_name: err.name,
    ...(code !== undefined ? { error_code: code } : {}),
    ...(cause ? { error_cause: cause } : {}),
  }
}

export function createLogger(
  opts: { level?: LogLevel; sink?: (line: string) => void; fields?: LogFields } = {},
): Logger {
  const min = LOG_LEVELS.indexOf(opts.level ?? 'info')
  const sink = opts.sink ?? ((line: string) => process.stdout.write(`${line}\n`))
  const base = opts.fields ?? {}
  const log =
    (level: LogLevel) =>
    (msg: string, fields: LogFields = {}): void => {
      if (LOG_LEVELS.indexOf(level) < min) return
      sink(JSON.stringify({ time: new Date().toISOString(), level, msg, ...base, ...fields }))
    }
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (fields) => createLogger({ ...opts, fields: { ...base, ...fields } }),
  }
}
