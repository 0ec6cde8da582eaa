/**
 * Reads a JSON request body with the checks every endpoint wants, in order: content type (415), size (413,
 * without buffering past the limit), arrival within BODY_TIMEOUT_MS (408), nesting depth and JSON syntax (400),
 * schema (400 naming each bad field). Returns the text as
 * well, because signed forwarding must send the exact bytes it validated. The checks themselves are the ones the
 * runner makes too (shared/src/http.ts).
 * @module
 */
import { parseJsonText, readBodyText, requireJsonContentType } from '@twinserve/shared'
import type { Context } from 'hono'
import type { z } from 'zod'
import type { AppEnv } from '../app-env.ts'

export interface JsonBody<T> {
  text: string
  data: T
}

/** Content type (415) and size (413) checks, then the body as text, within BODY_TIMEOUT_MS (408). */
export async function readJsonText(c: Context<AppEnv>, maxBytes: number): Promise<string> {
  requireJsonContentType(c.req.header('content-type'))
  return readBodyText(c.req.raw, maxBytes, { timeoutMs: c.get('config').BODY_TIMEOUT_MS })
}

export async function readJsonBody<S extends z.ZodType>(
  c: Context<AppEnv>,
  schema: S,
  maxBytes: number,
): Promise<JsonBody<z.output<S>>> {
  const text = await readJsonText(c, maxBytes)
  return { text, data: parseJsonText(text, schema) }
}
