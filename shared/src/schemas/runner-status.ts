/**
 * The gateway's view of its runners, as `GET /admin/runners` shows it: what each runner registered, plus what
 * the gateway itself knows (last heartbeat, circuit breaker, requests it has in flight there).
 * @module
 */
import { z } from 'zod'
import { RunnerLoadSchema, RunnerModelSchema } from './registry.ts'

/** closed: takes traffic; open: failed repeatedly, skipped until the cooldown ends; half_open: one trial. */
export const BREAKER_STATES = ['closed', 'open', 'half_open'] as const
export const BreakerStateSchema = z.enum(BREAKER_STATES)
export type BreakerState = z.infer<typeof BreakerStateSchema>

export const RunnerStatusSchema = z.object({
  runner_id: z.string(),
  url: z.string(),
  provider: z.enum(['cuda', 'cpu']),
  models: z.array(RunnerModelSchema),
  load: RunnerLoadSchema,
  draining: z.boolean(),
  registered_at: z.iso.datetime(),
  last_seen: z.iso.datetime(),
  /** Eligible for new requests: heartbeating, not draining, breaker not open. */
  healthy: z.boolean(),
  breaker: BreakerStateSchema,
  consecutive_failures: z.number().int().nonnegative(),
  /** Requests the gateway has sent there and not yet finished. */
  outstanding: z.number().int().nonnegative(),
})
export type RunnerStatus = z.infer<typeof RunnerStatusSchema>

export const RunnerListSchema = z.object({
  runners: z.array(RunnerStatusSchema),
  heartbeat_interval_ms: z.number().int().positive(),
})
export type RunnerList = z.infer<typeof RunnerListSchema>
