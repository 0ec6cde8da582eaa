/**
 * Which arm serves a request. Deterministic and sticky: the unit (API key or end-user id) hashes with the
 * experiment's salt into a bucket, and the bucket's owner in the allocation is the arm, on every isolate.
 * @module
 */
import type { Arm } from '@twinserve/shared'
import { AppError } from '@twinserve/shared'
import type { ActiveExperiment } from './active-experiments.ts'
import { armAt, unitBucket } from './allocation.ts'

export type AssignmentOutcome =
  /** Not part of the experiment: the request goes on as sent. */
  | { kind: 'none'; reason: 'no_unit' | 'own_controls' | 'not_enrolled' }
  /** The unit's arm was stopped by a guardrail: it gets the control's controls, and no exposure is recorded. */
  | { kind: 'fallback'; control: Arm }
  /** Served by `arm`; recorded as an exposure (pinned ones are left out of the statistics). */
  | { kind: 'arm'; arm: Arm; unitId: string; pinned: boolean }

export interface AssignmentInput {
  /** The unit id: the key id, or the x-twinserve-user header; undefined when the request has none. */
  unitId: string | undefined
  /** An arm pinned by the x-twinserve-arm header (the caller's admin scope was checked already). */
  pin: string | undefined
  /** The request carries its own merge controls: it asked for something specific and stays out. */
  hasOwnControls: boolean
}

export function assign(active: ActiveExperiment, input: AssignmentInput): AssignmentOutcome {
  const { experiment } = active
  if (input.pin !== undefined) {
    const arm = experiment.arms.find((a) => a.name === input.pin)
    if (!arm)
      throw new AppError(
        'INVALID_REQUEST',
        `x-twinserve-arm: experiment '${experiment.id}' on model '${experiment.model}' has no arm '${input.pin}' (arms: ${experiment.arms.map((a) => a.name).join(', ')})`,
      )
    return { kind: 'arm', arm, unitId: input.unitId ?? 'pinned', pinned: true }
  }
  if (input.hasOwnControls) return { kind: 'none', reason: 'own_controls' }
  if (input.unitId === undefined) return { kind: 'none', reason: 'no_unit' }
  const index = armAt(active.allocation, unitBucket(experiment.salt, input.unitId))
  const arm = index === undefined ? undefined : experiment.arms[index]
  if (!arm) return { kind: 'none', reason: 'not_enrolled' }
  if (arm.status !== 'active') {
    const control = experiment.arms.find((a) => a.control)
    return control ? { kind: 'fallback', control } : { kind: 'none', reason: 'not_enrolled' }
  }
  return { kind: 'arm', arm, unitId: input.unitId, pinned: false }
}
