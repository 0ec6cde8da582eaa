/**
 * One text generation through the gateway (/v1 and /v2 generate): the key's token budget checked before the
 * call (429), the call routed with failover before the answer's first byte and no hedging (route-request.ts),
 * a stream passed on as it arrives (event-meter.ts), and the answer's prompt + completion tokens charged to
 * the key once it is complete: a whole answer's `usage`, a stream's last `usage` chunk (the gateway asks the
 * runner for it on /v1), else (a stream without one, e.g. cut short) the events that carried text.
 * @module
 */
import { type Usage, UsageSchema } from '@twinserve/shared'
import type { Context } from 'hono'
import type { z } from 'zod'
import type { AppEnv } from '../app-env.ts'
import { requestDeadline } from '../http/request-deadline.ts'
import { chargeTokens, requireTokenBudget } from '../rate-limit/token-limit.ts'
import { routeBase } from '../routing/route-base.ts'
import { routeRequest } from '../routing/route-request.ts'
import { meterEvents } from './event-meter.ts'

export interface GenerationCall {
  model: string
  /** The runner's path, e.g. /v1/chat/completions. */
  path: string
  /** JSON text as it goes to the runner. */
  body: string
  stream: boolean
  /** What a whole (not streamed) answer must parse as. */
  okSchema: z.ZodType
  /** For a stream: leave out the usage-only chunk the client did not ask for. */
  dropUsageOnly: boolean
  /** When the request arrived (ms since epoch). */
  arrived: number
  /** Variant to prefer runners for, from the merge controls. */
  variant?: string | undefined
}

const tokensOf = (usage: Usage | undefined) => usage?.total_tokens ?? 0

/** Routes the call; the answer as it should go to the client. */
export async function proxyGeneration(c: Context<AppEnv>, call: GenerationCall): Promise<Response> {
  await requireTokenBudget(c)
  const res = await routeRequest({
    ...routeBase(c, call.model, requestDeadline(c, call.arrived)),
    ...(call.variant !== undefined ? { variant: call.variant } : {}),
    generation: true,
    stream: call.stream,
    method: 'POST',
    path: call.path,
    body: call.body,
    okSchema: call.okSchema,
  })
  if (res.status !== 200 || !res.body) return res
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    const body = meterEvents(res.body, {
      dropUsageOnly: call.dropUsageOnly,
      onEnd: (t) => chargeTokens(c, t.usage ? tokensOf(t.usage) : t.pieces),
    })
    const headers = new Headers(res.headers)
    // Proxies (nginx) must not buffer a token stream.
    headers.set('x-accel-buffering', 'no')
    return new Response(body, { status: res.status, headers })
  }
  const text = await res.text()
  const usage = UsageSchema.safeParse((JSON.parse(text) as { usage?: unknown }).usage)
  chargeTokens(c, usage.success ? tokensOf(usage.data) : 0)
  return new Response(text, { status: res.status, headers: res.headers })
}
