/**
 * Wire details of Twinserve's two HTTP edges, the gateway (workerd) and the runner (Node), kept in one place so
 * that they cannot drift: the request-id and deadline headers, how a schema failure is described, the JSON
 * content-type check, and the 405 answer. Runtime-neutral: zod and plain TS (`crypto.randomUUID` is global in
 * both runtimes).
 * @module
 */
import type { z } from 'zod'
import { AppError } from './errors.ts'

/** Names the request in logs, error bodies and runner calls; the gateway forwards it to the runner. */
export const REQUEST_ID_HEADER = 'x-request-id'
/** Caller-chosen request ids are kept only when tame: they end up in logs, headers and D1 keys. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/

/** The caller's request id when it matches REQUEST_ID_PATTERN, else a fresh UUID. */
export function requestIdFrom(given: string | null | undefined): string {
  return given && REQUEST_ID_PATTERN.test(given) ? given : crypto.randomUUID()
}

/**
 * How long the caller will wait (ms from now): a client may ask the gateway for less than its deadline, and the
 * gateway tells each runner attempt how long it has left, so a runner drops work nobody waits for.
 */
export const DEADLINE_HEADER = 'x-twinserve-deadline-ms'

/** The deadline header's value in ms: a positive integer (400 INVALID_REQUEST otherwise). */
export function parseDeadlineHeader(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) === 0)
    throw new AppError('INVALID_REQUEST', `${DEADLINE_HEADER} must be a positive integer (ms)`)
  return Number(value)
}

/** Schema failures name at most this many issues, then how many more there are. */
export const MAX_DESCRIBED_ISSUES = 5

export interface DescribeIssuesOptions {
  /** Prefixed to every issue's path, e.g. `query` or `parameters`. */
  root?: string
  /** A message of its own for some issues (undefined: the default `path: message`). */
  describe?: (issue: z.core.$ZodIssue) => string | undefined
}

/**
 * One line naming each bad field: `inputs.0.data.3: expected a number; id: too long; and 2 more`.
 * @example describeIssues(parsed.error, { root: 'query' })
 */
export function describeIssues(
  error: { readonly issues: readonly z.core.$ZodIssue[] },
  options: DescribeIssuesOptions = {},
): string {
  const parts = error.issues.slice(0, MAX_DESCRIBED_ISSUES).map((issue) => {
    const own = options.describe?.(issue)
    if (own !== undefined) return own
    const path = [options.root ?? '', ...issue.path.map(String)].filter((p) => p !== '').join('.')
    return path ? `${path}: ${issue.message}` : issue.message
  })
  const more = error.issues.length - MAX_DESCRIBED_ISSUES
  return more > 0 ? `${parts.join('; ')}; and ${more} more` : parts.join('; ')
}

/** `application/json`, or a structured-syntax `+json` type, with any parameters (charset). */
const JSON_CONTENT_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i

export function isJsonContentType(value: string | null | undefined): boolean {
  return value !== null && value !== undefined && JSON_CONTENT_TYPE.test(value)
}

/** @throws AppError UNSUPPORTED_MEDIA_TYPE (415) unless the Content-Type is JSON */
export function requireJsonContentType(value: string | null | undefined): void {
  if (!isJsonContentType(value))
    throw new AppError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Content-Type must be application/json (got ${value ? `'${value}'` : 'none'})`,
    )
}

/**
 * How deep JSON bodies may nest. A V2 request needs about 5 levels around its tensors plus one per tensor
 * dimension (MAX_TENSOR_RANK 8); admin bodies fewer. The limit exists because schema validation of nested data
 * (zod's recursive tensor `data`) recurses once per level: 2,000 levels overflowed the stack.
 */
export const MAX_JSON_DEPTH = 32

/**
 * Refuses JSON text that nests deeper than `maxDepth`, in one iterative pass over the characters (brackets
 * inside strings do not count), before anything parses or validates it recursively.
 * @throws AppError INVALID_REQUEST naming the limit
 */
export function checkJsonDepth(text: string, maxDepth = MAX_JSON_DEPTH): void {
  // Nesting cannot exceed the number of brackets, and counting them is a native scan: the usual body (a flat
  // tensor, a handful of brackets) needs no walk over every character (issue #17: 3 % of the gateway's profile).
  let openers = 0
  for (const open of ['[', '{'])
    for (let i = text.indexOf(open); i !== -1 && openers <= maxDepth; i = text.indexOf(open, i + 1))
      openers++
  if (openers <= maxDepth) return
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i)
    if (inString) {
      if (ch === 0x5c)
        i++ // backslash: skip the escaped character
      else if (ch === 0x22) inString = false
    } else if (ch === 0x22) inString = true
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > maxDepth)
        throw new AppError(
          'INVALID_REQUEST',
          `body nests deeper than ${maxDepth} levels (at character ${i}); tensors need one level per dimension`,
        )
    } else if (ch === 0x5d || ch === 0x7d) depth--
  }
}

/**
 * JSON syntax (nesting checked first, see checkJsonDepth), then the schema; 400 INVALID_REQUEST naming what is
 * wrong.
 * @param what prefixes schema failures, e.g. `invalid inference request`
 */
export function parseJsonText<S extends z.ZodType>(
  text: string,
  schema: S,
  what?: string,
): z.output<S> {
  checkJsonDepth(text)
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new AppError(
      'INVALID_REQUEST',
      `body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    )
  }
  const parsed = schema.safeParse(json)
  if (!parsed.success) {
    const issues = describeIssues(parsed.error)
    throw new AppError('INVALID_REQUEST', what ? `${what}: ${issues}` : issues)
  }
  return parsed.data
}

/**
 * The answer to a known path called with a method it does not serve: 405 METHOD_NOT_ALLOWED and the methods
 * that it does serve, in the message and in `Allow`.
 */
export function methodNotAllowed(
  method: string,
  path: string,
  allowed: readonly string[],
): { error: AppError; headers: { allow: string } } {
  const allow = allowed.join(', ')
  return {
    error: new AppError('METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}; use ${allow}`),
    headers: { allow },
  }
}
