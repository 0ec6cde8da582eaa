/**
 * The runner ⇄ gateway membership protocol. Runners POST these to the gateway, signed with the shared secret
 * (shared/src/signing.ts): register at start, heartbeat every few seconds with their load, deregister when they
 * drain. The gateway expires a runner whose heartbeats stop.
 *
 *   POST /internal/runners/register    RunnerRegistration  → RegistryAck
 *   POST /internal/runners/heartbeat   RunnerRegistration  → RegistryAck (same body: full state, idempotent)
 *   POST /internal/runners/deregister  { runner_id }       → RegistryAck
 * @module
 */
import { z } from 'zod'
import { NameSchema } from './twin-package.ts'

/** Where the gateway serves the membership calls. */
export const RUNNER_REGISTRY_BASE = '/internal/runners'
export const RUNNER_REGISTRY_PATHS = {
  register: `${RUNNER_REGISTRY_BASE}/register`,
  heartbeat: `${RUNNER_REGISTRY_BASE}/heartbeat`,
  deregister: `${RUNNER_REGISTRY_BASE}/deregister`,
} as const

export const RunnerLoadSchema = z.strictObject({
  /** Requests waiting in the runner's queue. */
  queue_depth: z.number().int().nonnegative(),
  /** Requests being executed. */
  in_flight: z.number().int().nonnegative(),
  /** Queue capacity; queue_depth at capacity means the runner answers 503. */
  capacity: z.number().int().positive(),
})
export type RunnerLoad = z.infer<typeof RunnerLoadSchema>

export const RunnerModelSchema = z.strictObject({
  name: z.string().min(1),
  /** The package's version id (`versions` in V2 model metadata); older runners omit it. */
  version: z.string().min(1).max(128).optional(),
  variants: z.array(z.string()),
  experts: z.array(z.string()),
  ready: z.boolean(),
  /**
   * The runner's routing drift for this model (0..1, `twinserve_runner_routing_drift`), when it has one: the
   * package records a build-time routing profile and enough routed rows have come (issue #19).
   */
  routing_drift: z.number().min(0).max(1).optional(),
})

export const RunnerRegistrationSchema = z.strictObject({
  runner_id: z.string().min(1).max(128),
  /** Base URL the gateway calls, e.g. http://127.0.0.1:8790 */
  url: z.url(),
  provider: z.enum(['cuda', 'cpu']),
  models: z.array(RunnerModelSchema),
  load: RunnerLoadSchema,
  /** Set when the runner is draining: it finishes what it has and takes nothing new. */
  draining: z.boolean().default(false),
  /** The runner's group (flag --group), which a rollout may target; runners that omit it are in "default". */
  group: NameSchema.optional(),
})
export type RunnerRegistration = z.infer<typeof RunnerRegistrationSchema>

export const RunnerDeregistrationSchema = z.strictObject({ runner_id: z.string().min(1).max(128) })

export const RegistryAckSchema = z.object({
  ok: z.literal(true),
  /** How often the gateway wants heartbeats (ms); a runner silent for 3 intervals is expired. */
  heartbeat_interval_ms: z.number().int().positive(),
})
export type RegistryAck = z.infer<typeof RegistryAckSchema>
