/**
 * One text generation through the gateway (/v1 and /v2 generate): the key's token budget checked before the
 * call (429), the call routed with failover before the answer's first byte and no hedging (route-request.ts),
 * a stream passed on as it arrives (event-meter.ts), and the answer's prompt + completion tokens charged to
 * the key once it is complete: a whole answer's `usage`, a stream's last `usage` chunk (the gateway asks the
 * runner for it on /v1), else (a stream without one, e.g. cut short) the events that carried text. When an A/B
 * arm serves the call, the answer names it and its exposure is recorded once the answer is over.
 * @module
 */
import { toAppError, type Usage, UsageSchema } from '@twinserve/shared'
import type { Context } from 'hono'
import type { z } from 'zod'
import type { AppEnv } from '../app-env.ts'
import { type ArmEnrolment, nameArm } from '../experiments/enrolment.ts'
import { requestDeadline } from '../http/request-deadline.ts'
import { metrics } from '../metrics/metrics-flush.ts'
import { chargeTokens, requireTokenBudget } from '../rate-limit/token-limit.ts'
import { routeBase } from '../routing/route-base.ts'
import { RUNNER_HEADER, routeRequest } from '../routing/route-request.ts'
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
  /**
   * The A/B arm that serves the call (experiments/enrolment.ts): named in the answer's headers and, with
   * `openai`, in its `twinserve` object (a stream's first chunk); the exposure is recorded when the answer is
   * over (a stream: when it ends or the client leaves), with the completion's `id` when `openai`.
   */
  arm?: { enrolment: ArmEnrolment; openai: boolean } | undefined
}

/** Adds the arm to an OpenAI answer's (or first chunk's) `twinserve` object. */
function stampArm(enrolment: ArmEnrolment) {
  return (json: Record<string, unknown>) => {
    const own = json.twinserve
    json.twinserve = {
      ...(own && typeof own === 'object' ? own : {}),
      arm: enrolment.arm,
      experiment: enrolment.experimentId,
    }
  }
}

const tokensOf = (usage: Usage | undefined) => usage?.total_tokens ?? 0

/**
 * Charges an answer's tokens to the key (its per-minute token limit) and counts them in the gateway's metrics,
 * by model and tenant: `usage` when the runner sent it, else `pieces` (a stream's text chunks) as completion.
 */
function countTokens(
  c: Context<AppEnv>,
  model: string,
  usage: Usage | undefined,
  pieces: number,
): void {
  chargeTokens(c, usage ? tokensOf(usage) : pieces)
  const labels = { model, tenant: c.get('principal').tenant }
  const prompt = usage?.prompt_tokens ?? 0
  const completion = usage ? usage.completion_tokens : pieces
  if (prompt > 0)
    metrics.inc('twinserve_gateway_generation_tokens_total', { ...labels, kind: 'prompt' }, prompt)
  if (completion > 0)
    metrics.inc(
      'twinserve_gateway_generation_tokens_total',
      { ...labels, kind: 'completion' },
      completion,
    )
}

/** Routes the call; the answer as it should go to the client. */
export async function proxyGeneration(c: Context<AppEnv>, call: GenerationCall): Promise<Response> {
  await requireTokenBudget(c)
  const arm = call.arm
  let res: Response
  try {
    res = await routeRequest({
      ...routeBase(c, call.model, requestDeadline(c, call.arrived)),
      ...(call.variant !== undefined ? { variant: call.variant } : {}),
      generation: true,
      stream: call.stream,
      method: 'POST',
      path: call.path,
      body: call.body,
      okSchema: call.okSchema,
    })
  } catch (err) {
    arm?.enrolment.record({
      status: toAppError(err).status,
      runnerId: c.get('requestLog').runnerId ?? null,
    })
    throw err
  }
  const runnerId = res.headers.get(RUNNER_HEADER)
  if (res.status !== 200 || !res.body) {
    arm?.enrolment.record({ status: res.status, runnerId })
    return arm ? nameArm(new Response(res.body, res), arm.enrolment) : res
  }
  const completionId = (id: unknown) => (arm?.openai && typeof id === 'string' ? id : undefined)
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    // The charge and the exposure happen when the stream ends, which may be after the client left: keep the
    // request's context alive until then, or their waitUntil (and the exposure flush's timer) would be dropped.
    let ended: () => void = () => undefined
    const streamEnded = new Promise<void>((resolve) => {
      ended = resolve
    })
    try {
      c.executionCtx.waitUntil(streamEnded)
    } catch {
      // No execution context (a direct app.request in a unit test).
    }
    const body = meterEvents(res.body, {
      dropUsageOnly: call.dropUsageOnly,
      stampFirst: arm?.openai ? stampArm(arm.enrolment) : undefined,
      onEnd: (t) => {
        countTokens(c, call.model, t.usage, t.pieces)
        // A stream's exposure spans it: its latency is to the last event (or to the client leaving).
        arm?.enrolment.record({ status: res.status, runnerId, completionId: completionId(t.id) })
        ended()
      },
    })
    const headers = new Headers(res.headers)
    // Proxies (nginx) must not buffer a token stream.
    headers.set('x-accel-buffering', 'no')
    const streamed = new Response(body, { status: res.status, headers })
    return arm ? nameArm(streamed, arm.enrolment) : streamed
  }
  let text = await res.text()
  const json = JSON.parse(text) as Record<string, unknown>
  const usage = UsageSchema.safeParse(json.usage)
  countTokens(c, call.model, usage.success ? usage.data : undefined, 0)
  if (!arm) return new Response(text, { status: res.status, headers: res.headers })
  if (arm.openai) {
    stampArm(arm.enrolment)(json)
    text = JSON.stringify(json)
  }
  arm.enrolment.record({ status: res.status, runnerId, completionId: completionId(json.id) })
  const headers = new Headers(res.headers)
  headers.delete('content-length')
  return nameArm(new Response(text, { status: res.status, headers }), arm.enrolment)
}
