/**
 * Reads a JSON request body with the checks every endpoint wants, in order: content type (415), size (413,
 * without buffering past the limit), JSON syntax (400), schema (400 naming each bad field). Returns the text as
 * well, because signed forwarding must send the exact bytes it validated.
 * @module
 */
import { AppError, readBodyText } from '@twinserve/shared'
import type { Context } from 'hono'
import type { z } from 'zod'

const MAX_ISSUES = 5

/** `inputs.0.data.3: tensor 'x' element 3: expected a number; …` */
export function describeIssues(error: z.ZodError, root = ''): string {
  const parts = error.issues.slice(0, MAX_ISSUES).map((i) => {
    const path = [root, ...i.path.map(String)].filter(Boolean).join('.')
    return path ? `${path}: ${i.message}` : i.message
  })
  const more = error.issues.length - MAX_ISSUES
  return more > 0 ? `${parts.join('; ')}; and ${more} more` : parts.join('; ')
}

export interface JsonBody<T> {
  text: string
  data: T
}

/** Content type (415) and size (413) checks, then the body as text. */
export async function readJsonText(c: Context, maxBytes: number): Promise<string> {
  const type = c.req.header('content-type') ?? ''
  if (!/^application\/(?:[\w.+-]+\+)?json\b/i.test(type))
    throw new AppError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Content-Type must be application/json (got ${type ? `'${type}'` : 'none'})`,
    )
  return readBodyText(c.req.raw, maxBytes)
}

/** JSON syntax (400) and schema (400 naming each bad field). */
export function parseJsonText<S extends z.ZodType>(text: string, schema: S): z.output<S> {
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
  if (!parsed.success) throw new AppError('INVALID_REQUEST', describeIssues(parsed.error))
  return parsed.data
}

export async function readJsonBody<S extends z.ZodType>(
  c: Context,
  schema: S,
  maxBytes: number,
): Promise<JsonBody<z.output<S>>> {
  const text = await readJsonText(c, maxBytes)
  return { text, data: parseJsonText(text, schema) }
}
