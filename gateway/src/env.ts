/**
 * The gateway's bindings and per-request variables: one `AppEnv` generic flows through every handler.
 * Binding names match wrangler.toml; vars arrive as strings and are parsed by config.ts.
 * @module
 */
import type { GatewayConfig } from './config.ts'
import type { ExperimentBandit } from './durable-objects/experiment-bandit.ts'
import type { RateLimiter } from './durable-objects/rate-limiter.ts'
import type { RunnerRegistry } from './durable-objects/runner-registry.ts'
import type { Principal } from './middleware/auth/principal.ts'
import type { RequestLog } from './middleware/request-log/request-log.ts'

export interface Bindings {
  /** D1: API keys, experiments and their exposures (gateway/migrations). */
  DB: D1Database
  /** One instance (`global`): membership, cold-start waits, counters. */
  RUNNER_REGISTRY: DurableObjectNamespace<RunnerRegistry>
  /** One instance per API key id: its token bucket and daily quota. */
  RATE_LIMITER: DurableObjectNamespace<RateLimiter>
  /** One instance per Thompson-sampling experiment (its id): arm posteriors and the traffic split. */
  EXPERIMENT_BANDIT: DurableObjectNamespace<ExperimentBandit>
  /** Secret: HMAC key shared with the runners (both directions). */
  RUNNER_SIGNING_SECRET?: string
  /** Secret: a bearer token with the admin scope, for creating the first keys. */
  ADMIN_BOOTSTRAP_SECRET?: string
  GATEWAY_VERSION?: string
  COLD_START_WAIT_MS?: string
  COLD_START_RETRY_AFTER_S?: string
  REQUEST_DEADLINE_MS?: string
  HEARTBEAT_INTERVAL_MS?: string
  RATE_LIMIT_RPS?: string
  RATE_LIMIT_BURST?: string
  MAX_ATTEMPTS?: string
  MAX_BODY_BYTES?: string
  BREAKER_FAILURE_THRESHOLD?: string
  BREAKER_COOLDOWN_MS?: string
  AUTH_CACHE_TTL_MS?: string
  ROUTING_CACHE_MS?: string
  METRICS_FLUSH_MS?: string
  EXPERIMENT_CACHE_MS?: string
  EXPOSURE_FLUSH_MS?: string
  GUARDRAIL_CHECK_MS?: string
  LOG_LEVEL?: string
}

export type AppEnv = {
  Bindings: Bindings
  Variables: {
    requestId: string
    config: GatewayConfig
    /** Set by the auth middleware on routes that need a key. */
    principal: Principal
    /** Fields the access log writes when the request ends; handlers add to it. */
    requestLog: RequestLog
    /** The verified body of a signed runner → gateway call (runner-signature middleware). */
    signedBody: string
  }
}
