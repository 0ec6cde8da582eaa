/**
 * The decision label of an arm, from its guardrail state and its always-valid comparison with the control.
 * Because the p-value is always valid, "arm better / worse" may be acted on the moment it appears.
 * @module
 */
import type { ArmResults } from '@twinserve/shared'

export type ArmDecision = ArmResults['decision']

export function decide(input: {
  control: boolean
  stopped: boolean
  pValue: number | undefined
  difference: number | undefined
  alpha: number
}): ArmDecision {
  if (input.stopped) return 'guardrail_stop'
  if (input.control) return 'control'
  if (input.pValue === undefined || input.difference === undefined) return 'keep_running'
  if (input.pValue <= input.alpha && input.difference !== 0)
    return input.difference > 0 ? 'arm_better' : 'arm_worse'
  return 'keep_running'
}
