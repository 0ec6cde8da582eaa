/**
 * Outcome feedback for an exposure, named by its request id or, for a generation, by the completion id the
 * answer carried: a reward in [0, 1], or a label compared with the prediction the gateway recorded from the
 * response (generations record none: rate them with a reward). Only the tenant whose request it was can attach it, with a key that covers the
 * model; anything else is answered as unknown (404), so request ids of other tenants cannot be probed. Feedback
 * is final: a retry with the same value is acknowledged as a duplicate, a different value is refused.
 * @module
 */
import {
  ALL_MODELS,
  AppError,
  type FeedbackRequest,
  type FeedbackResponse,
} from '@twinserve/shared'
import { z } from 'zod'
import type { Principal } from '../auth/principal.ts'
import type { GatewayConfig } from '../config.ts'
import { banditStub } from './bandit.ts'
import { flushExposures } from './exposure-buffer.ts'

interface ExposureRow {
  request_id: string
  experiment_id: string
  arm: string
  model: string
  pinned: number
  status: number
  prediction: string | null
  reward: number | null
  mode: string
  experiment_status: string
}

const PredictionColumn = z.array(z.string())

function rewardFromLabel(req: FeedbackRequest, row: ExposureRow): number {
  const labels = Array.isArray(req.label) ? req.label : [req.label]
  if (row.prediction === null)
    throw new AppError(
      'INVALID_REQUEST',
      `request '${req.request_id}' has no recorded prediction (it answered ${row.status}, or its response had no prediction output); send a reward instead of a label`,
    )
  const predicted = PredictionColumn.parse(JSON.parse(row.prediction))
  if (labels.length !== predicted.length)
    throw new AppError(
      'INVALID_REQUEST',
      `label: request '${req.request_id}' predicted ${predicted.length} row(s); send ${predicted.length === 1 ? 'one label' : `an array of ${predicted.length} labels`}, got ${labels.length}`,
    )
  const right = labels.filter((l, i) => String(l) === predicted[i]).length
  return right / labels.length
}

export async function recordFeedback(
  env: Env,
  config: GatewayConfig,
  principal: Principal,
  req: FeedbackRequest,
): Promise<FeedbackResponse> {
  // An exposure this isolate made a moment ago may still sit in its buffer.
  await flushExposures(env, config)
  // The id names a request (x-request-id) or a completion (its `id`); a request id wins when both match, since
  // request ids are the caller's own and could look like a completion's.
  const row = await env.DB.prepare(
    `SELECT x.request_id, x.experiment_id, x.arm, x.model, x.pinned, x.status, x.prediction, x.reward, e.mode,
       e.status AS experiment_status
     FROM exposures x JOIN experiments e ON e.id = x.experiment_id
     WHERE x.tenant = ?1 AND (x.request_id = ?2 OR x.completion_id = ?2)
     ORDER BY x.request_id = ?2 DESC LIMIT 1`,
  )
    .bind(principal.tenant, req.request_id)
    .first<ExposureRow>()
  const covers =
    row && (principal.models.includes(ALL_MODELS) || principal.models.includes(row.model))
  if (!row || !covers)
    throw new AppError(
      'NOT_FOUND',
      `no experiment exposure with request or completion id '${req.request_id}' for this key (requests outside a running experiment have none; exposures are written within EXPOSURE_FLUSH_MS of the answer's end)`,
    )
  const reward = req.reward ?? rewardFromLabel(req, row)
  const answer = (duplicate: boolean): FeedbackResponse => ({
    request_id: req.request_id,
    experiment_id: row.experiment_id,
    arm: row.arm,
    reward,
    duplicate,
  })
  const conflict = (previous: number) =>
    new AppError(
      'INVALID_REQUEST',
      `request '${req.request_id}' already has feedback (reward ${previous}); feedback is final`,
    )
  if (row.reward !== null) {
    if (row.reward === reward) return answer(true)
    throw conflict(row.reward)
  }
  const updated = await env.DB.prepare(
    `UPDATE exposures SET reward = ?, feedback_ts = ? WHERE tenant = ? AND request_id = ? AND reward IS NULL`,
  )
    .bind(reward, Date.now(), principal.tenant, row.request_id)
    .run()
  if ((updated.meta.changes ?? 0) === 0) {
    // Another feedback for the same request won the race.
    const now = await env.DB.prepare(
      'SELECT reward FROM exposures WHERE tenant = ? AND request_id = ?',
    )
      .bind(principal.tenant, row.request_id)
      .first<{ reward: number | null }>()
    if (now?.reward === reward) return answer(true)
    throw conflict(now?.reward ?? Number.NaN)
  }
  if (row.mode === 'thompson' && row.experiment_status === 'running' && row.pinned === 0)
    await banditStub(env, row.experiment_id).observe([{ arm: row.arm, reward }])
  return answer(false)
}
