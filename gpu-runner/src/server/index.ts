/**
 * The serving process (`@twinserve/gpu-runner/server`): the V2 app, the runner that owns it, its OpenAPI document,
 * and the structured logger and Prometheus metrics that other processes on the runner's machine (the image's
 * package pull, the deployment tests) share with it.
 * @module
 */
export { createApp } from './app.ts'
export type { AppDeps } from './app-deps.ts'
export {
  createLogger,
  errorFields,
  LOG_LEVELS,
  type LogFields,
  type Logger,
  type LogLevel,
} from './logger.ts'
export { createMetrics, type DriftOptions, type RunnerMetrics } from './metrics.ts'
export { ModelRepository, type ModelRepositoryOptions } from './model-repository.ts'
export { buildRunnerOpenApiDocument } from './openapi-document.ts'
export {
  estimateLoadedBytes,
  MEMORY_PER_PACKAGE_BYTE,
  MEMORY_PER_SESSION_BYTES,
  packageBytes,
} from './package-location.ts'
export {
  DRIFT_MIN_ROWS,
  DRIFT_WINDOW_ROWS,
  RoutingDrift,
  totalVariation,
} from './routing-drift.ts'
export { exitOnSignals, type Runner, type RunnerDeps, startRunner } from './runner.ts'
