/**
 * One signed call to one runner, classified: a response to hand to the caller (2xx that parses against the
 * expected schema, or the runner's 4xx verdict on the caller's request, a merge quota's 429 included), or a
 * failure the router may retry elsewhere (connection lost, timeout, 5xx, malformed answer). Timeouts are told
 * apart by whose budget ran out: the attempt's own (`timeout`, the runner's fault) or the caller's deadline
 * (`deadline`, nobody's fault).
 *
 * A streamed generation (`stream`) is committed once the runner's server-sent events have begun: the call
 * waits for the first bytes of a 2xx event stream (within the attempt's budget, so a runner that accepts and
 * then says nothing is failed over like any other) and hands on the rest of the body as it arrives, with no
 * time limit but the caller's presence: cancelling the handed-on body (the client went away) cancels the
 * runner call, which frees the runner's sequence.
 * @module
 */
import {
  checkInferResponseBody,
  DEADLINE_HEADER,
  type ErrorBody,
  INFERENCE_HEADER_CONTENT_LENGTH,
  isErrorCode,
  REQUEST_ID_HEADER,
  ROUTING_SUMMARY_HEADER,
  signRequest,
  toAppError,
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
  /** Sent byte for byte (and signed as such): JSON text, or a binary tensor body. */
  body: string | Uint8Array
  /** Headers that describe the body: its Content-Type and, for binary bodies, Inference-Header-Content-Length. */
  bodyHeaders?: Record<string, string>
  requestId: string
  /** The tenant the request is made for, signed (the runner charges per-tenant merge quotas on it). */
  tenant?: string
  /** How long (ms from now) this attempt may take; the runner is told the same deadline. */
  budgetMs: number
  /** Whether `budgetMs` is what is left of the caller's deadline rather than the attempt's own budget. */
  callerBound: boolean
  /** Aborts the attempt from outside (another attempt answered first, or the caller left). */
  signal?: AbortSignal
  secret: string
  /** What a 2xx body must parse as (not read for a streamed answer). */
  okSchema: z.ZodType
  /**
   * A fast accept of `okSchema` (never true where the schema says no); what it does not accept goes to the
   * schema. zod runs interpreted in workerd, and every answer is checked (issue #17).
   */
  okCheck?: (json: unknown) => boolean
  /** A generation asked with `stream: true`: a 2xx answer is server-sent events, passed on unbuffered. */
  stream?: boolean
}

export type RunnerResult =
  | {
      kind: 'answer'
      status: number
      /**
       * JSON text, a binary infer answer (then `headers` carries its content type and header length), or a
       * streamed generation's events as they arrive (`headers` carries the event-stream type).
       */
      body: string | Uint8Array | ReadableStream<Uint8Array>
      headers?: Record<string, string>
      retryAfter?: string
      /** The runner's routing summary of a routed infer answer (ROUTING_SUMMARY_HEADER), not passed on. */
      routing?: string
    }
  | {
      kind: 'failure'
      outcome: Exclude<AttemptOutcome, 'ok' | 'client_error'>
      detail: string
      /** The runner's HTTP answer, when there was one (relayed if no other runner does better). */
      status?: number
      body?: string
      retryAfter?: string
    }

const decoder = new TextDecoder()

const LooseErrorSchema = z.object({ error: z.string(), code: z.unknown().optional() })

function snippet(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

type Streamed = Extract<RunnerResult, { kind: 'answer' }> & { body: ReadableStream<Uint8Array> }

const isEventStream = (res: Response) =>
  (res.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream')

/**
 * The rest of a stream whose first chunk was already read: pulled as the caller reads (one chunk at a time, no
 * buffering), and cancelling it cancels the runner's body.
 */
function resumed(first: Uint8Array, reader: ReadableStreamDefaultReader<Uint8Array>) {
  let pending: Uint8Array | undefined = first
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (pending) {
          controller.enqueue(pending)
          pending = undefined
          return
        }
        // The client leaving aborts the fetch too, so a read in flight may fail: that ends the stream quietly.
        const next = await reader.read().catch((err: unknown) => ({ error: err }))
        if ('error' in next) controller.error(next.error)
        else if (next.done) controller.close()
        else controller.enqueue(next.value)
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => undefined)
      },
    },
    { highWaterMark: 0 },
  )
}

/** Sends the call; the response's status and text, a streamed answer, or how the attempt ended without one. */
async function send(
  call: RunnerCall,
): Promise<
  | { res: Response; bytes: Uint8Array; text: string }
  | Streamed
  | Extract<RunnerResult, { kind: 'failure' }>
> {
  const signed = await signRequest(call.secret, {
    method: call.method,
    path: call.path,
    body: call.body as string | Uint8Array<ArrayBuffer>,
    ...(call.tenant ? { tenant: call.tenant } : {}),
  })
  const headers: Record<string, string> = {
    ...signed,
    accept: call.stream ? 'text/event-stream, application/json' : 'application/json',
    // The gateway reads every answer; compressing it on the runner would only cost both sides CPU.
    'accept-encoding': 'identity',
    [REQUEST_ID_HEADER]: call.requestId,
    [DEADLINE_HEADER]: String(Math.max(1, Math.round(call.budgetMs))),
  }
  if (call.method === 'POST')
    Object.assign(headers, { 'content-type': 'application/json' }, call.bodyHeaders)
  // A timer rather than AbortSignal.timeout: a stream's budget ends at its first bytes, not with its body.
  const timeout = new AbortController()
  const timer = setTimeout(
    () => timeout.abort(new DOMException('attempt budget spent', 'TimeoutError')),
    Math.max(1, call.budgetMs),
  )
  try {
    const res = await fetch(call.baseUrl.replace(/\/+$/, '') + call.path, {
      method: call.method,
      headers,
      body: call.method === 'POST' ? (call.body as string | Uint8Array<ArrayBuffer>) : null,
      signal: call.signal ? AbortSignal.any([timeout.signal, call.signal]) : timeout.signal,
    })
    if (call.stream && res.status >= 200 && res.status < 300 && isEventStream(res) && res.body) {
      const reader = res.body.getReader()
      const first = await reader.read()
      if (first.done)
        return {
          kind: 'failure',
          outcome: 'bad_response',
          detail: 'runner sent an empty event stream',
        }
      clearTimeout(timer)
      return {
        kind: 'answer',
        status: res.status,
        body: resumed(first.value, reader),
        headers: {
          'content-type': res.headers.get('content-type') ?? 'text/event-stream',
          'cache-control': 'no-cache',
        },
      }
    }
    const bytes = new Uint8Array(await res.arrayBuffer())
    // A binary answer's tensors are not text; its JSON header is read where it is checked.
    const text = res.headers.has(INFERENCE_HEADER_CONTENT_LENGTH) ? '' : decoder.decode(bytes)
    return { res, bytes, text }
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err)
    if (call.signal?.aborted) return { kind: 'failure', outcome: 'abandoned', detail }
    if (timeout.signal.aborted)
      return {
        kind: 'failure',
        outcome: call.callerBound ? 'deadline' : 'timeout',
        detail: `no answer within ${Math.round(call.budgetMs)} ms (${call.callerBound ? "the caller's deadline" : "the attempt's budget"})`,
      }
    return { kind: 'failure', outcome: 'connect_error', detail }
  } finally {
    clearTimeout(timer)
  }
}

const routingOf = (res: Response): { routing?: string } => {
  const h = res.headers.get(ROUTING_SUMMARY_HEADER)
  return h === null ? {} : { routing: h }
}

export async function callRunner(call: RunnerCall): Promise<RunnerResult> {
  if (call.budgetMs <= 0)
    return {
      kind: 'failure',
      outcome: call.callerBound ? 'deadline' : 'timeout',
      detail: 'no time left',
    }
  const sent = await send(call)
  if ('kind' in sent) return sent
  const { res, bytes, text } = sent
  if (call.stream && res.status >= 200 && res.status < 300)
    return {
      kind: 'failure',
      outcome: 'bad_response',
      detail: `runner answered a stream request without an event stream: ${snippet(text)}`,
    }
  const headerLength = res.headers.get(INFERENCE_HEADER_CONTENT_LENGTH)
  if (res.status >= 200 && res.status < 300 && headerLength !== null) {
    // A binary answer (the binary tensor extension): its JSON header is checked, its tensors pass untouched.
    try {
      checkInferResponseBody(bytes, Number(headerLength))
    } catch (err) {
      return {
        kind: 'failure',
        outcome: 'bad_response',
        detail: `runner sent a malformed binary answer: ${toAppError(err).message}`,
      }
    }
    return {
      kind: 'answer',
      status: res.status,
      body: bytes,
      headers: {
        'content-type': 'application/octet-stream',
        [INFERENCE_HEADER_CONTENT_LENGTH]: headerLength,
      },
      ...routingOf(res),
    }
  }

  if (res.status >= 500) {
    // Busy (503: try another runner, relay Retry-After if none does better), out of time (504: whose budget
    // it was decides whether it is the runner's fault) or broken (other 5xx).
    const outcome =
      res.status === 503
        ? 'overloaded'
        : res.status === 504
          ? call.callerBound
            ? 'deadline'
            : 'timeout'
          : 'server_error'
    const retryAfter = res.status === 503 ? res.headers.get('retry-after') : null
    return {
      kind: 'failure',
      outcome,
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
    const parsed = call.okCheck?.(json) ? { success: true as const } : call.okSchema.safeParse(json)
    if (!parsed.success)
      return {
        kind: 'failure',
        outcome: 'bad_response',
        detail: `runner response does not match the protocol: ${parsed.error.issues[0]?.message ?? ''}`,
      }
    return { kind: 'answer', status: res.status, body: text, ...routingOf(res) }
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
  // 429 from a runner is the caller's quota there (per-tenant merges): relayed with its Retry-After.
  const retryAfter = res.status === 429 ? res.headers.get('retry-after') : null
  return {
    kind: 'answer',
    status: res.status,
    body: JSON.stringify(body),
    ...(retryAfter ? { retryAfter } : {}),
  }
}
