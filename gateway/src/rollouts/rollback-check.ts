/**
 * The automatic rollback: after outcomes are written, the rollout's arms' recent windows are judged
 * (rollback-decision.ts); a verdict rolls the canary back by itself (canary_percent 0, reason recorded), and this
 * isolate forgets its cached rollout at once, so the next request already goes to stable. Checked at most every
 * GUARDRAIL_CHECK_MS per rollout per isolate, like the experiments' guardrails.
 * @module
 */
import type { GatewayConfig } from '../config.ts'
import { metrics } from '../metrics/metrics-flush.ts'
import { errorFields, log } from '../util/log.ts'
import { forgetRollouts } from './active-rollouts.ts'
import { rollbackVerdict } from './rollback-decision.ts'
import { getRollout, recentOutcomes, rollBack } from './rollout-store.ts'

/** Judges the model's rollout `id` now; returns the rollback reason when it rolled the canary back. */
export async function checkRollout(
  env: Env,
  model: string,
  id: string,
): Promise<string | undefined> {
  const r = await getRollout(env.DB, model)
  if (r?.id !== id || r.state !== 'active' || r.canary === null) return undefined
  const window = r.guardrails.window
  const canary = await recentOutcomes(env.DB, id, 'canary', window)
  if (canary.length < r.guardrails.min_samples) return undefined
  const stable = await recentOutcomes(env.DB, id, 'stable', window)
  const { reason } = rollbackVerdict(r, canary, stable)
  if (!reason) return undefined
  if (!(await rollBack(env.DB, model, id, reason))) return undefined
  forgetRollouts()
  metrics.inc('twinserve_gateway_rollout_rollbacks_total', { model })
  log('warn', 'rollout_rolled_back', { model, rollout_id: id, canary: r.canary, reason })
  return reason
}

const lastCheck = new Map<string, number>()

export async function checkRolloutThrottled(
  env: Env,
  config: GatewayConfig,
  model: string,
  id: string,
): Promise<void> {
  const now = Date.now()
  const last = lastCheck.get(id)
  if (last !== undefined && now - last < config.GUARDRAIL_CHECK_MS) return
  lastCheck.set(id, now)
  try {
    await checkRollout(env, model, id)
  } catch (err) {
    log('warn', 'rollout_check_failed', { model, rollout_id: id, ...errorFields(err) })
  }
}
