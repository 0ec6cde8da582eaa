/**
 * The serving process (`@twinserve/gpu-runner/server`): the V2 app, the runner that owns it, and the structured
 * logger and Prometheus metrics that other processes on the runner's machine (the image's package pull, the
 * deployment tests) share with it.
 * @module
 */
export { type AppDeps, createApp } from './app.ts'
export {
  createLogger,
  errorFields,
  LOG_LEVELS,
  type LogFields,
  type Logger,
  type LogLevel,
} from './logger.ts'
export { createMetrics, type RunnerMetrics } from './metrics.ts'
export { exitOnSignals, type Runner, type RunnerDeps, startRunner } from './runner.ts'
