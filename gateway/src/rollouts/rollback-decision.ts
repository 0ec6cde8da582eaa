/**
 * Whether a canary must be rolled back, from the recent outcomes of both arms. Two verdicts, both the
 * experiments' own machinery: the canary's window crosses a guardrail (guardrails.ts: too many 5xx, too slow a
 * p95), or the always-valid test (mSPRT, statistics/msprt.ts) of the per-request error indicator says the canary
 * errs more than stable at level alpha — a test that may be looked at after every batch without inflating its
 * false alarms, which is exactly how the gateway looks at it.
 * @module
 */
import type { Guardrails } from '@twinserve/shared'
import { guardrailViolation } from '../experiments/guardrails.ts'
import { SequentialComparison } from '../experiments/statistics/msprt.ts'
import type { OutcomeSample } from './rollout-store.ts'

/** τ of the normal mixture over the difference of error rates: differences of about 10 points are the target. */
const ERROR_RATE_MIXTURE_SD = 0.1

export interface RollbackVerdict {
  /** Why to roll back; undefined: keep going. */
  reason: string | undefined
  /** Always-valid p-value of "the canary errs as often as stable" (1 while either arm is in burn-in). */
  pValue: number
}

const isError = (s: OutcomeSample) => (s.status >= 500 ? 1 : 0)

/** `canary` and `stable` oldest first. */
export function rollbackVerdict(
  config: { guardrails: Guardrails; alpha: number },
  canary: readonly OutcomeSample[],
  stable: readonly OutcomeSample[],
): RollbackVerdict {
  const g = config.guardrails
  const test = new SequentialComparison({
    tau2: ERROR_RATE_MIXTURE_SD ** 2,
    burnIn: g.min_samples,
    alpha: config.alpha,
  })
  // Both arms' outcomes in arrival order, as the test would have seen them live.
  let i = 0
  let j = 0
  while (i < canary.length || j < stable.length) {
    const c = canary[i]
    const s = stable[j]
    if (c && (!s || c.ts <= s.ts)) {
      test.add('treatment', isError(c))
      i++
    } else if (s) {
      test.add('control', isError(s))
      j++
    }
  }
  const pValue = test.pValue
  const violation = guardrailViolation(g, canary)
  if (violation) return { reason: `guardrail: canary ${violation}`, pValue }
  if (pValue <= config.alpha && test.difference > 0) {
    const rate = (xs: readonly OutcomeSample[]) =>
      (xs.reduce((n, x) => n + isError(x), 0) / xs.length).toFixed(4)
    return {
      reason: `always-valid test: canary error rate ${rate(canary)} over ${canary.length} requests exceeds stable's ${rate(stable)} over ${stable.length} (p = ${pValue.toExponential(2)} ≤ alpha ${config.alpha})`,
      pValue,
    }
  }
  return { reason: undefined, pValue }
}
