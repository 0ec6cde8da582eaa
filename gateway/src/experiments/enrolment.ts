/**
 * The experiment step every serving route shares (V2 infer, /v1 completions and chat, V2 generate): check an
 * arm pin, find the model's running experiment (cached), assign the request an arm (sticky per unit), name the
 * arm in the answer's headers, and hand the route a recorder for the exposure. The route itself puts the arm's
 * merge controls in place of the request's (each body keeps them elsewhere) and says when the answer is over.
 * @module
 */
import {
  AppError,
  ARM_HEADER,
  EXPERIMENT_HEADER,
  type Parameters,
  USER_ID_HEADER,
  UserIdSchema,
} from '@twinserve/shared'
import type { Context } from 'hono'
import type { AppEnv } from '../app-env.ts'
import { errorFields, log } from '../util/log.ts'
import { activeExperiment } from './active-experiments.ts'
import { assign } from './assignment.ts'
import { addExposure, type ExposureRecord, scheduleExposureFlush } from './exposure-buffer.ts'

export interface EnrolInput {
  model: string
  /** The request's own merge controls (undefined or {}: none). */
  controls: Record<string, unknown> | undefined
  /** ms since epoch when the request arrived */
  arrived: number
  /**
   * An end-user id from the body (OpenAI's `user`), the unit of a `user_id` experiment when the request has no
   * x-twinserve-user header (the header wins when both are sent).
   */
  bodyUser?: string | null | undefined
}

/** How a served request ended, for its exposure. */
export interface ExposureOutcome {
  status: number
  runnerId: string | null
  /** The per-row prediction, read off the request path (label feedback compares with it). */
  prediction?: (() => string[] | undefined) | undefined
  /** A completion's `id` as answered (feedback may name it instead of the request id). */
  completionId?: string | undefined
}

export type Enrolment =
  /** Not part of an experiment: the request goes on as sent. */
  | { kind: 'as_sent' }
  /** The unit's arm was stopped by a guardrail: the control's controls, and no exposure. */
  | { kind: 'fallback'; controls: Parameters }
  /** Served by an arm: its controls replace the request's; `record` once the answer is over. */
  | {
      kind: 'arm'
      controls: Parameters
      arm: string
      experimentId: string
      predictionOutput: string | null
      record(outcome: ExposureOutcome): void
    }

export type ArmEnrolment = Extract<Enrolment, { kind: 'arm' }>

function unitOf(
  c: Context<AppEnv>,
  unit: 'api_key' | 'user_id',
  bodyUser: string | null | undefined,
): string | undefined {
  if (unit === 'api_key') return c.get('principal').key_id
  const header = c.req.header(USER_ID_HEADER)
  const given = header ?? bodyUser ?? undefined
  if (given === undefined) return undefined
  const parsed = UserIdSchema.safeParse(given)
  if (!parsed.success)
    throw new AppError(
      'INVALID_REQUEST',
      `${header !== undefined ? USER_ID_HEADER : 'user'}: ${parsed.error.issues[0]?.message ?? 'malformed'}`,
    )
  return parsed.data
}

/** The request's arm, if a running experiment on the model takes it in. */
export async function enrol(c: Context<AppEnv>, input: EnrolInput): Promise<Enrolment> {
  const pin = c.req.header(ARM_HEADER)
  if (pin !== undefined && !c.get('principal').scopes.includes('admin'))
    throw new AppError(
      'FORBIDDEN',
      `${ARM_HEADER}: pinning an arm needs a key with the admin scope`,
    )
  const config = c.get('config')
  let active: Awaited<ReturnType<typeof activeExperiment>>
  try {
    active = await activeExperiment(c.env, config, input.model)
  } catch (err) {
    // Experiments must never take serving down: without its experiment (D1 or the bandit unreachable), the
    // request is served as sent and simply not enrolled.
    log('warn', 'experiment_lookup_failed', {
      request_id: c.get('requestId'),
      model: input.model,
      ...errorFields(err),
    })
    if (pin !== undefined) throw err
    return { kind: 'as_sent' }
  }
  if (!active) {
    if (pin !== undefined)
      throw new AppError(
        'INVALID_REQUEST',
        `${ARM_HEADER}: model '${input.model}' has no running experiment whose arm could be pinned`,
      )
    return { kind: 'as_sent' }
  }
  const { experiment } = active
  const outcome = assign(active, {
    unitId: unitOf(c, experiment.unit, input.bodyUser),
    pin,
    hasOwnControls: input.controls !== undefined && Object.keys(input.controls).length > 0,
  })
  if (outcome.kind === 'none') return { kind: 'as_sent' }
  if (outcome.kind === 'fallback') return { kind: 'fallback', controls: outcome.control.parameters }

  const principal = c.get('principal')
  const base = {
    tenant: principal.tenant,
    request_id: c.get('requestId'),
    experiment_id: experiment.id,
    arm: outcome.arm.name,
    unit_id: outcome.unitId,
    key_id: principal.key_id,
    model: input.model,
    pinned: outcome.pinned,
    ts: input.arrived,
  }
  let recorded = false
  const record = (o: ExposureOutcome) => {
    if (recorded) return
    recorded = true
    const latency = Date.now() - input.arrived
    addExposure(
      (async (): Promise<ExposureRecord> => {
        let prediction: string[] | null = null
        if (o.prediction)
          try {
            prediction = o.prediction() ?? null
          } catch (err) {
            log('debug', 'prediction_unreadable', {
              request_id: base.request_id,
              ...errorFields(err),
            })
          }
        return {
          ...base,
          latency_ms: latency,
          status: o.status,
          runner_id: o.runnerId,
          prediction,
          completion_id: o.completionId ?? null,
        }
      })(),
    )
    const flush = scheduleExposureFlush(c.env, config)
    if (flush)
      try {
        c.executionCtx.waitUntil(flush)
      } catch {
        // No execution context (a direct app.request in a unit test): the flush runs on its own timer.
      }
  }
  // Set before routing, so error answers (built by onError from this context) name the arm too.
  c.header(ARM_HEADER, outcome.arm.name)
  c.header(EXPERIMENT_HEADER, experiment.id)
  return {
    kind: 'arm',
    controls: outcome.arm.parameters,
    arm: outcome.arm.name,
    experimentId: experiment.id,
    predictionOutput: experiment.prediction_output,
    record,
  }
}

/** Names the arm on an answer built outside the context (a Response the route returns as is). */
export function nameArm(res: Response, enrolment: ArmEnrolment): Response {
  res.headers.set(ARM_HEADER, enrolment.arm)
  res.headers.set(EXPERIMENT_HEADER, enrolment.experimentId)
  return res
}
