/**
 * Errors on the OpenAI-compatible routes in OpenAI's shape (shared/src/schemas/openai-error.ts), so that the
 * official clients raise their typed errors with our message and code. Every error these routes answer passes
 * here on its way out, whoever made it: the guard (401/403/429), the handler, the router (503, 504) or a
 * runner's 4xx relayed by runner-client.ts, all of which arrive in the shared `{error, code, request_id}` body.
 * Status, headers (Retry-After, x-request-id) and code are kept; only the body's shape changes.
 * @module
 */
import { ErrorBodySchema, type OpenAIErrorBody, openAIErrorType } from '@twinserve/shared'
import { createMiddleware } from 'hono/factory'
import type { AppEnv } from '../app-env.ts'

/** The same error in OpenAI's shape, or undefined when `text` is not our error body. */
export function toOpenAIError(status: number, text: string): OpenAIErrorBody | undefined {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  const parsed = ErrorBodySchema.safeParse(json)
  if (!parsed.success) return undefined
  const { error, code, request_id } = parsed.data
  return {
    error: { message: error, type: openAIErrorType(status), param: null, code },
    ...(request_id !== undefined ? { request_id } : {}),
  }
}

/** Rewrites an error answer of the route into OpenAI's shape (after everything else has run). */
export function openAIErrors() {
  return createMiddleware<AppEnv>(async function openAIErrors(c, next) {
    await next()
    const res = c.res
    if (res.status < 400 || !(res.headers.get('content-type') ?? '').includes('application/json'))
      return
    const converted = toOpenAIError(res.status, await res.clone().text())
    if (!converted) return
    const headers = new Headers(res.headers)
    headers.delete('content-length')
    c.res = undefined
    c.res = new Response(JSON.stringify(converted), { status: res.status, headers })
  })
}
