/**
 * Guardrails: an arm whose recent exposures show too many 5xx answers or too slow a p95 is stopped, with the
 * reason recorded; its units fall back to the control. When the control itself crosses a guardrail the whole
 * experiment stops. Checked after exposure writes, at most every GUARDRAIL_CHECK_MS per experiment per isolate.
 * @module
 */
import type { Guardrails } from '@twinserve/shared'
import type { GatewayConfig } from '../config.ts'
import { errorFields, log } from '../util/log.ts'
import { Throttle } from '../util/throttle.ts'
import { forgetActiveExperiments } from './active-experiments.ts'
import { banditStub } from './bandit.ts'
import { getExperiment, stopArm, stopExperiment } from './experiment-store.ts'
import { quantileSorted } from './statistics/quantile.ts'

export interface WindowSample {
  status: number
  latency_ms: number
}

/** Why the window crosses a guardrail, or undefined when it does not (or has too few samples to say). */
export function guardrailViolation(
  g: Guardrails,
  window: readonly WindowSample[],
): string | undefined {
  const n = window.length
  if (n < g.min_samples) return undefined
  if (g.max_error_rate !== undefined) {
    const errors = window.filter((s) => s.status >= 500).length
    const rate = errors / n
    if (rate > g.max_error_rate)
      return `error rate ${rate.toFixed(4)} (${errors}/${n} answers 5xx) exceeds max_error_rate ${g.max_error_rate}`
  }
  if (g.max_p95_latency_ms !== undefined) {
    const p95 = quantileSorted(
      window.map((s) => s.latency_ms).sort((a, b) => a - b),
      0.95,
    )
    if (p95 > g.max_p95_latency_ms)
      return `p95 latency ${Math.round(p95)} ms over the last ${n} exposures exceeds max_p95_latency_ms ${g.max_p95_latency_ms}`
  }
  return undefined
}

/** Checks every active arm of a running experiment and stops those crossing a guardrail. */
export async function checkGuardrails(env: Env, experimentId: string): Promise<string[]> {
  const e = await getExperiment(env.DB, experimentId)
  if (e?.status !== 'running') return []
  const g = e.guardrails
  if (g.max_error_rate === undefined && g.max_p95_latency_ms === undefined) return []
  const stopped: string[] = []
  for (const arm of e.arms) {
    if (arm.status !== 'active') continue
    const { results } = await env.DB.prepare(
      `SELECT status, latency_ms FROM exposures WHERE experiment_id = ? AND arm = ? AND pinned = 0
       ORDER BY ts DESC LIMIT ?`,
    )
      .bind(e.id, arm.name, g.window)
      .all<WindowSample>()
    const violation = guardrailViolation(g, results)
    if (!violation) continue
    if (!(await stopArm(env.DB, e.id, arm.name, violation))) continue
    stopped.push(arm.name)
    log('warn', 'experiment_guardrail_stop', {
      experiment_id: e.id,
      model: e.model,
      arm: arm.name,
      control: arm.control,
      reason: violation,
    })
    if (arm.control) {
      await stopExperiment(
        env.DB,
        e.id,
        `guardrail: control arm '${arm.name}' stopped (${violation})`,
      )
      break
    }
    if (e.mode === 'thompson') await banditStub(env, e.id).stopArm(arm.name)
  }
  if (stopped.length > 0) forgetActiveExperiments()
  return stopped
}

/** Experiments one isolate remembers checking: far more than run at once; ids of ended ones pile up otherwise. */
export const MAX_THROTTLED_EXPERIMENTS = 256
export const guardrailChecks = new Throttle(MAX_THROTTLED_EXPERIMENTS)

export async function checkGuardrailsThrottled(
  env: Env,
  config: GatewayConfig,
  experimentId: string,
): Promise<void> {
  if (!guardrailChecks.tryRun(experimentId, Date.now(), config.GUARDRAIL_CHECK_MS)) return
  try {
    await checkGuardrails(env, experimentId)
  } catch (err) {
    log('warn', 'guardrail_check_failed', { experiment_id: experimentId, ...errorFields(err) })
  }
}
