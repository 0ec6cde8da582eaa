/**
 * One signed call to one runner, classified: a response to hand to the caller (2xx that parses against the
 * expected schema, or the runner's 4xx verdict on the caller's request), or a failure the router may retry
 * elsewhere (connection lost, timeout, 5xx, malformed answer).
 * @module
 */
import {
  DEADLINE_HEADER,
  type ErrorBody,
  isErrorCode,
  REQUEST_ID_HEADER,
  signRequest,
} from '@twinserve/shared'
import { z } from 'zod'
import { codeForStatus } from '../http/error-response.ts'
import type { AttemptOutcome } from './runner-pool.ts'

export interface RunnerCall {
  /** Runner base URL as registered, e.g. http://127.0.0.1:8790 */
  baseUrl: string
  method: 'GET' | 'POST'
  /** V2 path, e.g. /v2/models/demo/infer; this (not any base path) is what gets signed. */
  path: string
  body: string
  requestId: string
  /** Absolute time (ms since epoch) after which the attempt is abandoned. */
  deadlineMs: number
  secret: string
  /** What a 2xx body must parse as. */
  okSchema: z.ZodType
}

export type RunnerResult =
  | { kind: 'answer'; status: number; body: string }
  | {
      kind: 'failure'
      outcome: Exclude<AttemptOutcome, 'ok' | 'client_error'>
      detail: string
      /** The runner's HTTP answer, when there was one (relayed if no other runner does better). */
      status?: number
      body?: string
      retryAfter?: string
    }

const LooseErrorSchema = z.object({ error: z.string(), code: z.unknown().optional() })

function snippet(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

export async function callRunner(call: RunnerCall): Promise<RunnerResult> {
  const remaining = call.deadlineMs - Date.now()
  if (remaining <= 0) return { kind: 'failure', outcome: 'timeout', detail: 'deadline passed' }
  const signed = await signRequest(call.secret, {
    method: call.method,
    path: call.path,
    body: call.body,
  })
  const headers: Record<string, string> = {
    ...signed,
    accept: 'application/json',
    [REQUEST_ID_HEADER]: call.requestId,
    [DEADLINE_HEADER]: String(remaining),
  }
  if (call.method === 'POST') headers['content-type'] = 'application/json'

  let res: Response
  let text: string
  try {
    res = await fetch(call.baseUrl.replace(/\/+$/, '') + call.path, {
      method: call.method,
      headers,
      body: call.method === 'POST' ? call.body : null,
      signal: AbortSignal.timeout(remaining),
    })
    text = await res.text()
  } catch (err) {
    const timedOut =
      err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')
    return {
      kind: 'failure',
      outcome: timedOut ? 'timeout' : 'connect_error',
      detail: err instanceof Error ? err.message : String(err),
    }
  }

  if (res.status === 429 || res.status >= 500) {
    // Busy (429, 503: try another runner, relay Retry-After if none does better) or broken (other 5xx).
    const overloaded = res.status === 503 || res.status === 429
    const retryAfter = overloaded ? res.headers.get('retry-after') : null
    return {
      kind: 'failure',
      outcome: overloaded ? 'overloaded' : 'server_error',
      detail: `runner answered ${res.status}: ${snippet(text)}`,
      status: res.status,
      body: text,
      ...(retryAfter ? { retryAfter } : {}),
    }
  }

  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return {
      kind: 'failure',
      outcome: 'bad_response',
      detail: `runner sent non-JSON: ${snippet(text)}`,
    }
  }
  if (res.status >= 200 && res.status < 300) {
    const parsed = call.okSchema.safeParse(json)
    if (!parsed.success)
      return {
        kind: 'failure',
        outcome: 'bad_response',
        detail: `runner response does not match the protocol: ${parsed.error.issues[0]?.message ?? ''}`,
      }
    return { kind: 'answer', status: res.status, body: text }
  }
  // A 4xx is the runner's verdict on the caller's request: relay it, in our error shape with our request id.
  // Plain V2 servers send only {"error": msg}; the code then follows from the status.
  const err = LooseErrorSchema.safeParse(json)
  if (!err.success)
    return {
      kind: 'failure',
      outcome: 'bad_response',
      detail: `runner sent an error (${res.status}) without an error message: ${snippet(text)}`,
    }
  const body: ErrorBody = {
    error: err.data.error,
    code: isErrorCode(err.data.code) ? err.data.code : codeForStatus(res.status),
    request_id: call.requestId,
  }
  return { kind: 'answer', status: res.status, body: JSON.stringify(body) }
}
