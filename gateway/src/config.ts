/**
 * The gateway's tunables, parsed from wrangler vars (strings) once per `env` object. A malformed value is an
 * operator mistake: every request answers 500 naming the variable, rather than running with a silent default.
 * @module
 */
import { AppError } from '@twinserve/shared'
import { z } from 'zod'
import { LOG_LEVELS } from './util/log.ts'

const int = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback)

export const GatewayConfigSchema = z.object({
  GATEWAY_VERSION: z.string().default('0.1.0'),
  /** How long a request waits for a runner holding its model to appear. 0 disables the wait. */
  COLD_START_WAIT_MS: int(0, 15 * 60_000, 30_000),
  COLD_START_RETRY_AFTER_S: int(1, 3600, 10),
  /** Upper bound for a request's whole life at the gateway (clients may ask for less). */
  REQUEST_DEADLINE_MS: int(100, 15 * 60_000, 60_000),
  HEARTBEAT_INTERVAL_MS: int(100, 10 * 60_000, 5_000),
  RATE_LIMIT_RPS: z.coerce.number().positive().max(1_000_000).default(50),
  RATE_LIMIT_BURST: int(1, 1_000_000, 100),
  /** Runners tried per request (first try plus retries on other runners). */
  MAX_ATTEMPTS: int(1, 10, 3),
  MAX_BODY_BYTES: int(1024, 100 * 1024 * 1024, 32 * 1024 * 1024),
  /**
   * JSON inference bodies are parsed into JS values in the isolate (about 5× their size in memory); past this they
   * are refused (413) and the answer points to the binary tensor extension, whose tensors the gateway checks by
   * size without decoding. A valid 9 MB JSON body used to take down the isolate for every tenant in it (#16). The
   * isolate's limit is 128 MB and it serves many requests at once: 4 MiB keeps one JSON request near 20 MB.
   */
  MAX_JSON_BODY_BYTES: int(1024, 100 * 1024 * 1024, 4 * 1024 * 1024),
  /** The whole request body must arrive within this (408 REQUEST_TIMEOUT): a trickled body never holds a request. */
  BODY_TIMEOUT_MS: int(100, 15 * 60_000, 30_000),
  /**
   * Each attempt at a runner may take ATTEMPT_TIMEOUT_FACTOR × the p99 latency this isolate has seen from the
   * runners for the model (and body size), but at least ATTEMPT_TIMEOUT_MIN_MS; a frozen runner is abandoned then
   * and its timeout counts against its breaker. Without enough samples (or for per-request merges) an attempt
   * has the caller's whole deadline, and running out of it is no one's fault.
   */
  ATTEMPT_TIMEOUT_MIN_MS: int(50, 15 * 60_000, 5_000),
  ATTEMPT_TIMEOUT_FACTOR: int(1, 1000, 10),
  /**
   * An attempt still unanswered after the observed p99 (at least HEDGE_MIN_MS) is hedged: the same request goes
   * to a second runner and the first answer wins (inference is idempotent). Hedges are budgeted to
   * HEDGE_BUDGET_PERCENT of requests, so a slow fleet is not sent twice the load. 0 turns hedging off. The floor
   * only keeps timer noise from hedging a tiny p99; above the p99 it would break the promise that a hung peer
   * costs a request at most about 2× the p99 (hedge point + the other runner's answer): it was 50 ms, and a
   * bare gateway's p99 is ~33 ms (issue #16).
   */
  HEDGE_MIN_MS: int(1, 60_000, 10),
  HEDGE_BUDGET_PERCENT: int(0, 100, 10),
  /**
   * '1': every routed answer carries `x-twinserve-route-trace`, how its attempts went (runners tried, hedges,
   * budgets, the class's p99, breakers). For diagnosing tails (bench/chaos); off, the hot path pays one check.
   */
  ROUTE_TRACE: z
    .enum(['0', '1'])
    .default('0')
    .transform((v) => v === '1'),
  /** Consecutive failures that open a runner's circuit breaker. */
  BREAKER_FAILURE_THRESHOLD: int(1, 1000, 3),
  BREAKER_COOLDOWN_MS: int(10, 10 * 60_000, 10_000),
  /** Per-isolate cache of API key lookups; a key revoked elsewhere stops working within this time. */
  AUTH_CACHE_TTL_MS: int(0, 10 * 60_000, 5_000),
  /** How old an isolate's snapshot of the registry may be before it is fetched again. */
  ROUTING_CACHE_MS: int(0, 60_000, 1_000),
  /** How often each isolate flushes its counters to the registry object. */
  METRICS_FLUSH_MS: int(10, 60_000, 1_000),
  /** Per-isolate cache of each model's running experiment; starting or stopping one elsewhere shows within this. */
  EXPERIMENT_CACHE_MS: int(0, 60_000, 1_000),
  /** Exposures are written to D1 in batches at most this long after their response (off the request path). */
  EXPOSURE_FLUSH_MS: int(1, 60_000, 250),
  /** How often an isolate re-checks a running experiment's guardrails after writing its exposures. */
  GUARDRAIL_CHECK_MS: int(0, 10 * 60_000, 5_000),
  /** Minimum level of the structured logs (info logs one line per request). */
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  RUNNER_SIGNING_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
  ADMIN_BOOTSTRAP_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
})
export type GatewayConfig = z.infer<typeof GatewayConfigSchema>

const cache = new WeakMap<object, GatewayConfig>()

/** Parses (and memoises per env object) the gateway config; throws AppError INTERNAL naming bad vars. */
export function loadConfig(env: Env): GatewayConfig {
  const hit = cache.get(env)
  if (hit) return hit
  const parsed = GatewayConfigSchema.safeParse(env)
  if (!parsed.success) {
    const what = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
    throw new AppError('INTERNAL', `gateway misconfigured: ${what}`)
  }
  cache.set(env, parsed.data)
  return parsed.data
}

/** The signing secret, or a clear 500: without it the gateway can neither sign nor verify runner traffic. */
export function signingSecret(config: GatewayConfig): string {
  if (!config.RUNNER_SIGNING_SECRET)
    throw new AppError('INTERNAL', 'gateway misconfigured: RUNNER_SIGNING_SECRET is not set')
  return config.RUNNER_SIGNING_SECRET
}
