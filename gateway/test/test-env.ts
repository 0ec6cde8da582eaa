/**
 * Values the gateway tests run with, shared by vitest.config.ts (Node: miniflare bindings) and the tests
 * (workerd). Test-only secrets: never used outside `npm test`.
 * @module
 */
export const TEST_SIGNING_SECRET = 'test-runner-signing-secret-7f3a9c'
export const TEST_ADMIN_SECRET = 'test-admin-bootstrap-secret-51d2e8'
export const TEST_COLD_START_WAIT_MS = 1500
export const TEST_COLD_START_RETRY_AFTER_S = 7
export const TEST_HEARTBEAT_INTERVAL_MS = 5000
export const TEST_BREAKER_FAILURE_THRESHOLD = 2
export const TEST_BREAKER_COOLDOWN_MS = 60_000
export const TEST_MAX_BODY_BYTES = 256 * 1024
export const TEST_MAX_JSON_BODY_BYTES = 64 * 1024
export const TEST_AUTH_CACHE_TTL_MS = 1000
export const TEST_BODY_TIMEOUT_MS = 1000
/** The pre-auth IP limit in tests (per 60 s); only requests that carry cf-connecting-ip are counted. */
export const TEST_PREAUTH_LIMIT = 20

/** The string vars the gateway reads, as wrangler would pass them. */
export const TEST_BINDINGS = {
  RUNNER_SIGNING_SECRET: TEST_SIGNING_SECRET,
  ADMIN_BOOTSTRAP_SECRET: TEST_ADMIN_SECRET,
  COLD_START_WAIT_MS: String(TEST_COLD_START_WAIT_MS),
  COLD_START_RETRY_AFTER_S: String(TEST_COLD_START_RETRY_AFTER_S),
  HEARTBEAT_INTERVAL_MS: String(TEST_HEARTBEAT_INTERVAL_MS),
  BREAKER_FAILURE_THRESHOLD: String(TEST_BREAKER_FAILURE_THRESHOLD),
  BREAKER_COOLDOWN_MS: String(TEST_BREAKER_COOLDOWN_MS),
  MAX_BODY_BYTES: String(TEST_MAX_BODY_BYTES),
  MAX_JSON_BODY_BYTES: String(TEST_MAX_JSON_BODY_BYTES),
  BODY_TIMEOUT_MS: String(TEST_BODY_TIMEOUT_MS),
  REQUEST_DEADLINE_MS: '10000',
  RATE_LIMIT_RPS: '1000',
  RATE_LIMIT_BURST: '1000',
  AUTH_CACHE_TTL_MS: String(TEST_AUTH_CACHE_TTL_MS),
  METRICS_FLUSH_MS: '50',
  // Experiments: exposures written quickly, guardrails checked after every write.
  EXPOSURE_FLUSH_MS: '20',
  GUARDRAIL_CHECK_MS: '0',
} as const

export type { StandInBehavior, StandInStats } from '../dev/stand-in-protocol.ts'
